package models

// Recommended is a model suggested to someone who has none yet: small enough for an
// ordinary laptop, published as GGUF, under a licence that allows everyday use. The
// sizes are approximate and only for showing; a download asks the Hub for the file's
// exact size and sha256 first.
type Recommended struct {
	Title   string // what people call it
	Repo    string // Hugging Face repository
	File    string // the .gguf file in it (a Q4_K_M: the usual size/quality balance)
	Size    int64  // approximate bytes
	License string
	Note    string // what it is good for, in a few words
}

// RecommendedModels are suggestions, not endorsements: a short list to start from,
// shown on the Discover view before any search, without touching the network.
var RecommendedModels = []Recommended{
	{Title: "Qwen2.5 0.5B Instruct", Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", File: "qwen2.5-0.5b-instruct-q4_k_m.gguf",
		Size: 491 << 20, License: "Apache 2.0", Note: "tiny and quick; a first test on any machine"},
	{Title: "Llama 3.2 1B Instruct", Repo: "bartowski/Llama-3.2-1B-Instruct-GGUF", File: "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
		Size: 808 << 20, License: "Llama 3.2 Community", Note: "small general chat model"},
	{Title: "SmolLM2 1.7B Instruct", Repo: "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF", File: "smollm2-1.7b-instruct-q4_k_m.gguf",
		Size: 1056 << 20, License: "Apache 2.0", Note: "small, fully open model"},
	{Title: "Qwen2.5 1.5B Instruct", Repo: "Qwen/Qwen2.5-1.5B-Instruct-GGUF", File: "qwen2.5-1.5b-instruct-q4_k_m.gguf",
		Size: 1117 << 20, License: "Apache 2.0", Note: "good answers for its size; multilingual"},
	{Title: "Phi-3.5 mini Instruct", Repo: "bartowski/Phi-3.5-mini-instruct-GGUF", File: "Phi-3.5-mini-instruct-Q4_K_M.gguf",
		Size: 2393 << 20, License: "MIT", Note: "stronger reasoning; wants about 4 GB of memory"},
}
