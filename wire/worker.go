package wire

import "time"

// Health is the body of a worker's GET /health: 503 {"status":"loading","progress":p}
// while the model loads, 200 {"status":"ok"} once it can serve (llama-server's convention).
type Health struct {
	Status   string   `json:"status"`
	Progress *float64 `json:"progress,omitempty"`
	// Loaded workers: requests generating and waiting, and milliseconds since a request
	// last started or ended (since the load when none came).
	Active int   `json:"active"`
	Queued int   `json:"queued"`
	IdleMS int64 `json:"idle_ms"`
}

// Health statuses.
const (
	HealthOK      = "ok"
	HealthLoading = "loading"
)

// Capabilities is the body of a worker's GET /capabilities.
type Capabilities struct {
	WorkerID   string `json:"worker_id"`
	WorkerType string `json:"worker_type"`
	Model      string `json:"model"`
	ModelPath  string `json:"model_path"`
	Backend    string `json:"backend"`
	// Device is what the model runs on: "cpu", or the GPU's llama.cpp name and
	// description, e.g. "Vulkan0 (llvmpipe)".
	Device        string `json:"device"`
	ContextLength int    `json:"context_length"`
	Parallel      int    `json:"parallel"`
	// Vision: started with a multimodal projector (--mmproj), so chat messages may
	// carry image_url parts.
	Vision    bool      `json:"vision,omitempty"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	QueenURL  string    `json:"queen_url"`
	// Runtime is the llama.cpp build loaded: cpu, vulkan, cuda, metal or custom.
	Runtime string `json:"runtime,omitempty"`
	// GPULayers is the number of layers offloaded to Device (0 = CPU only).
	GPULayers int `json:"gpu_layers"`
	// DeviceMemory is the GPU's memory when the worker loaded (absent on the CPU).
	DeviceMemory *DeviceMemory `json:"device_memory,omitempty"`
	// Load is the worker's load and KV cache now.
	Load *WorkerLoad `json:"load,omitempty"`
}

// DeviceMemory is a device's free and total memory in bytes.
type DeviceMemory struct {
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
}

// WorkerLoad is a worker's load and KV cache use, in /capabilities.
type WorkerLoad struct {
	SlotsBusy       int   `json:"slots_busy"`
	Slots           int   `json:"slots"`
	QueuedRequests  int   `json:"queued_requests"`
	KVCacheTokens   int   `json:"kv_cache_tokens"`   // tokens held, the prompt cache included
	KVCacheCapacity int   `json:"kv_cache_capacity"` // tokens the cache holds: context × parallel
	KVCacheBytes    int64 `json:"kv_cache_bytes"`
	// PromptTokens counts every prompt token since start, CachedPromptTokens those
	// served from the prompt cache.
	PromptTokens       int64 `json:"prompt_tokens"`
	CachedPromptTokens int64 `json:"cached_prompt_tokens"`
}

// QueryQueenURL was the /capabilities query parameter by which a Queen handed a worker
// its URL. A GET changes nothing any more (an <img> tag could send it): a worker ignores
// it, and POST /adopt hands a worker its Queen.
const QueryQueenURL = "queen_url"

// AdoptRequest is the body of a worker's POST /adopt: the worker makes QueenURL its
// Queen when the request carries the worker's token, its identity key (HeaderWorkerKey),
// or comes from the Queen's own address (docs/security.md). The answer is the worker's
// Capabilities.
type AdoptRequest struct {
	QueenURL string `json:"queen_url"`
	// QueenToken, when the Queen requires one, is what the worker presents to it from
	// now on (heartbeats, registration): a worker started Queenless knows no token.
	// It is taken only from an adoption the worker trusts.
	QueenToken string `json:"queen_token,omitempty"`
}

// HeaderWorkerKey carries a worker's identity key where a request has no JSON body of
// its own: DELETE /v1/workers/{id} at the Queen, POST /adopt at the worker.
const HeaderWorkerKey = "X-Beekeeper-Worker-Key"
