package chattmpl_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/beekeeper-hive/beekeeper/worker/chattmpl"
	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// chat is the conversation every template renders: system, user, assistant, user.
var chat = []chattmpl.Message{
	{Role: "system", Content: "You are a helpful assistant."},
	{Role: "user", Content: "Hello!"},
	{Role: "assistant", Content: "Hi! How can I help?"},
	{Role: "user", Content: "What is 2+2?"},
}

func load(t *testing.T, name string) *chattmpl.Template {
	t.Helper()
	src, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chattmpl.Parse(string(src))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tmpl
}

// TestTemplateCorpus renders the published templates of seven model families and
// compares them with the prompt formats their model cards document.
func TestTemplateCorpus(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		msgs       []chattmpl.Message
		opts       chattmpl.Options
		want       string
	}{
		{"Llama 3.1", "llama-3.1-8b-instruct.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>"},
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"Qwen 2.5", "qwen2.5-7b-instruct.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, EOS: "<|im_end|>"},
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"},
		{"Qwen 2.5 default system prompt", "qwen2.5-7b-instruct.jinja", chat[1:2], chattmpl.Options{AddGenerationPrompt: true},
			"<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"},
		{"Qwen 3", "qwen3-8b.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, EOS: "<|im_end|>"},
			"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\nHi! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"},
		{"Qwen 3 without thinking", "qwen3-8b.jinja", chat[1:2], chattmpl.Options{AddGenerationPrompt: true, Vars: map[string]any{"enable_thinking": false}},
			"<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"},
		{"Qwen 3 drops past reasoning", "qwen3-8b.jinja", []chattmpl.Message{
			{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "<think>\nhmm\n</think>\n\nHello."}, {Role: "user", Content: "Bye"}},
			chattmpl.Options{AddGenerationPrompt: true},
			"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"},
		// Mistral v0.3 puts the system prompt before the last user message.
		{"Mistral 7B v0.3", "mistral-7b-instruct-v0.3.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, BOS: "<s>", EOS: "</s>"},
			"<s>[INST] Hello![/INST] Hi! How can I help?</s>[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]"},
		// Gemma has no system role: Gemma 3 prefixes the first user turn with it.
		{"Gemma 3", "gemma-3-4b-it.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, BOS: "<bos>", EOS: "<eos>"},
			"<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n<start_of_turn>model\nHi! How can I help?<end_of_turn>\n" +
				"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"},
		{"Gemma 2 without system", "gemma-2-9b-it.jinja", chat[1:], chattmpl.Options{AddGenerationPrompt: true, BOS: "<bos>", EOS: "<eos>"},
			"<bos><start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\nHi! How can I help?<end_of_turn>\n" +
				"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"},
		{"Phi-3.5 mini", "phi-3.5-mini-instruct.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, BOS: "<s>", EOS: "<|endoftext|>"},
			"<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\nHi! How can I help?<|end|>\n" +
				"<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"},
		{"Phi-3.5 mini, no generation prompt", "phi-3.5-mini-instruct.jinja", chat[1:3], chattmpl.Options{BOS: "<s>", EOS: "<|endoftext|>"},
			"<|user|>\nHello!<|end|>\n<|assistant|>\nHi! How can I help?<|end|>\n<|endoftext|>"},
		{"Phi-4", "phi-4.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, EOS: "<|im_end|>"},
			"<|im_start|>system<|im_sep|>You are a helpful assistant.<|im_end|><|im_start|>user<|im_sep|>Hello!<|im_end|>" +
				"<|im_start|>assistant<|im_sep|>Hi! How can I help?<|im_end|><|im_start|>user<|im_sep|>What is 2+2?<|im_end|><|im_start|>assistant<|im_sep|>"},
		{"DeepSeek R1", "deepseek-r1-distill-qwen-7b.jinja", chat, chattmpl.Options{AddGenerationPrompt: true, BOS: "<｜begin▁of▁sentence｜>", EOS: "<｜end▁of▁sentence｜>"},
			"<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello!<｜Assistant｜>Hi! How can I help?<｜end▁of▁sentence｜>" +
				"<｜User｜>What is 2+2?<｜Assistant｜><think>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := load(t, tc.file).Render(tc.msgs, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// weather is the tool of the tool-calling renders.
var weather = grammar.Tool{
	Name:        "get_weather",
	Description: "Get the current weather of a city",
	Parameters:  json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`),
}

// toolChat: a question, the assistant's call, the tool's result.
var toolChat = []chattmpl.Message{
	{Role: "system", Content: "You are a helpful assistant."},
	{Role: "user", Content: "What's the weather in Paris?"},
	{Role: "assistant", ToolCalls: []chattmpl.ToolCall{{ID: "abc123def", Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
	{Role: "tool", ToolCallID: "abc123def", Name: "get_weather", Content: `{"temp_c": 18}`},
}

// engineJSON is what the engine's tojson writes, where transformers would write
// `{"type": "function", …}` (", " and ": ", keys as given): compact, keys sorted.
func engineJSON(t *testing.T, v any, indent string) string {
	t.Helper()
	var b []byte
	var err error
	if indent == "" {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", indent)
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func weatherTool() map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{
		"name": "get_weather", "description": "Get the current weather of a city",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
	}}
}

// TestTemplateCorpusTools renders tool lists, an assistant's call and the tool's
// result through the tool-calling templates, as their model cards document.
func TestTemplateCorpusTools(t *testing.T) {
	tool := engineJSON(t, weatherTool(), "")
	args := engineJSON(t, map[string]any{"city": "Paris"}, "")
	qwenTools := "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + tool + "\n</tools>\n\n" +
		"For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
		"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
	qwenTurns := "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n" +
		"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + args + "}\n</tool_call><|im_end|>\n" +
		"<|im_start|>user\n<tool_response>\n{\"temp_c\": 18}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
	for _, tc := range []struct {
		name, file string
		opts       chattmpl.Options
		want       string
	}{
		{"Qwen 2.5", "qwen2.5-7b-instruct.jinja", chattmpl.Options{AddGenerationPrompt: true},
			"<|im_start|>system\nYou are a helpful assistant.\n\n" + qwenTools + qwenTurns},
		{"Qwen 3", "qwen3-8b.jinja", chattmpl.Options{AddGenerationPrompt: true},
			"<|im_start|>system\nYou are a helpful assistant.\n\n" + qwenTools + qwenTurns},
		// Llama 3.1 lists the tools in the first user message (tools_in_user_message)
		// and gives a tool's result to the ipython role, as JSON.
		{"Llama 3.1", "llama-3.1-8b-instruct.jinja", chattmpl.Options{AddGenerationPrompt: true, BOS: "<|begin_of_text|>"},
			"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n" +
				"You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" +
				"Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
				"Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n" +
				engineJSON(t, weatherTool(), "    ") + "\n\n" +
				"What's the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" +
				"{\"name\": \"get_weather\", \"parameters\": " + args + "}<|eot_id|>" +
				"<|start_header_id|>ipython<|end_header_id|>\n\n" + engineJSON(t, `{"temp_c": 18}`, "") + "<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"Llama 3.1, tools in the system message", "llama-3.1-8b-instruct.jinja",
			chattmpl.Options{AddGenerationPrompt: true, Vars: map[string]any{"tools_in_user_message": false, "date_string": "01 Dec 2026"}},
			"<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 01 Dec 2026\n\n" +
				"You have access to the following functions. To call a function, please respond with JSON for a function call." +
				"Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n" +
				engineJSON(t, weatherTool(), "    ") + "\n\n" +
				"You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat's the weather in Paris?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": " + args + "}<|eot_id|>" +
				"<|start_header_id|>ipython<|end_header_id|>\n\n" + engineJSON(t, `{"temp_c": 18}`, "") + "<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		// Mistral v0.3: tools before the last user message, calls with their 9-character
		// IDs, results by call_id; the system prompt only reaches a final user message.
		{"Mistral 7B v0.3", "mistral-7b-instruct-v0.3.jinja", chattmpl.Options{BOS: "<s>", EOS: "</s>"},
			"<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the current weather of a city\", \"parameters\": " +
				engineJSON(t, weatherTool()["function"].(map[string]any)["parameters"], "") + "}}][/AVAILABLE_TOOLS]" +
				"[INST] What's the weather in Paris?[/INST]" +
				"[TOOL_CALLS] [" + strings.TrimSuffix(engineJSON(t, map[string]any{"name": "get_weather", "arguments": map[string]any{"city": "Paris"}}, ""), "}") +
				", \"id\": \"abc123def\"}]</s>" +
				"[TOOL_RESULTS] {\"content\": {\"temp_c\": 18}, \"call_id\": \"abc123def\"}[/TOOL_RESULTS]"},
		// DeepSeek writes arguments as text: the probe finds it, and they pass as given.
		{"DeepSeek R1", "deepseek-r1-distill-qwen-7b.jinja", chattmpl.Options{AddGenerationPrompt: true, BOS: "<｜begin▁of▁sentence｜>", EOS: "<｜end▁of▁sentence｜>"},
			"<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>What's the weather in Paris?" +
				"<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>" +
				"<｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp_c\": 18}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Tools = []grammar.Tool{weather}
			got, err := load(t, tc.file).Render(toolChat, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestRenderRefusals: a template's raise_exception is a *RaisedError carrying its
// message (the request's fault), not ErrTemplate (the template's).
func TestRenderRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		msgs       []chattmpl.Message
		want       string
	}{
		{"Gemma 2 has no system role", "gemma-2-9b-it.jinja", chat, "System role not supported"},
		{"roles must alternate", "gemma-3-4b-it.jinja", []chattmpl.Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}, "Conversation roles must alternate user/assistant/user/assistant/..."},
		{"Mistral call IDs", "mistral-7b-instruct-v0.3.jinja", []chattmpl.Message{{Role: "user", Content: "a"},
			{Role: "assistant", ToolCalls: []chattmpl.ToolCall{{ID: "call_1", Name: "f", Arguments: "{}"}}}}, "Tool call IDs should be alphanumeric strings with length 9!"},
		{"Llama 3.1 single call", "llama-3.1-8b-instruct.jinja", []chattmpl.Message{{Role: "user", Content: "a"},
			{Role: "assistant", ToolCalls: []chattmpl.ToolCall{{Name: "f", Arguments: "{}"}, {Name: "g", Arguments: "{}"}}}}, "This model only supports single tool-calls at once!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.file).Render(tc.msgs, chattmpl.Options{AddGenerationPrompt: true})
			raised, ok := errors.AsType[*chattmpl.RaisedError](err)
			if !ok || raised.Message != tc.want || errors.Is(err, chattmpl.ErrTemplate) {
				t.Errorf("error %v, want a *RaisedError %q", err, tc.want)
			}
		})
	}
}

// TestRenderTemplateErrors: what the caller answers by falling back matches ErrTemplate.
func TestRenderTemplateErrors(t *testing.T) {
	for name, src := range map[string]string{
		"unclosed tag":   "{{ messages[0].content ",
		"unclosed block": "{% for m in messages %}{{ m.content }}",
		"unknown filter": "{{ messages | no_such_filter }}",
		"call a string":  "{{ messages[0].content() }}",
	} {
		_, err := chattmpl.Render(src, chat, chattmpl.Options{})
		if !errors.Is(err, chattmpl.ErrTemplate) {
			t.Errorf("%s: %v, want ErrTemplate", name, err)
		}
	}
	// A call's arguments must be a JSON object for templates that show them as one.
	qwen := load(t, "qwen2.5-7b-instruct.jinja")
	bad := []chattmpl.Message{{Role: "user", Content: "a"}, {Role: "assistant", ToolCalls: []chattmpl.ToolCall{{Name: "f", Arguments: "[1]"}}}}
	if _, err := qwen.Render(bad, chattmpl.Options{}); !errors.Is(err, chattmpl.ErrArguments) || errors.Is(err, chattmpl.ErrTemplate) {
		t.Errorf("array arguments: %v", err)
	}
}

// TestWhitespaceLikeTransformers: templates render with transformers' Jinja settings
// (trim_blocks, lstrip_blocks, one trailing newline dropped), which the engine lacks.
func TestWhitespaceLikeTransformers(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"trim_blocks", "{% if true %}\nA\n{% endif %}\nB\n", "A\nB"},
		{"lstrip_blocks", "  {% if true %}\n  A\n  {% endif %}\nB", "  A\nB"},
		{"lstrip only at line start", "x  {% if true %}A{% endif %}", "x  A"},
		{"plus keeps indentation", "  {%+ if true %}A{% endif %}", "  A"},
		{"variables keep their newline", "{{ 'a' }}\nb", "a\nb"},
		{"comment with an apostrophe", "{# it's opaque: {{ %} #}\nX", "X"},
		{"comment trims like a block", "a\n  {#- note -#}\n  b", "ab"},
		{"trim marker stops at the neighbouring tag", "x {{ 'y' }}{%- if true %}z{% endif %}", "x yz"},
		{"trim markers", "a {{- 'b' -}} c\n{%- if true -%}\n d {%- endif %}", "abcd"},
		{"closers inside strings", `{{ "%}" + '}}' }}`, "%}}}"},
		{"one trailing newline only", "a\n\n", "a\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chattmpl.Render(tc.src, nil, chattmpl.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTemplateConcurrentRenders: one parsed template serves many requests at once.
func TestTemplateConcurrentRenders(t *testing.T) {
	tmpl := load(t, "qwen2.5-7b-instruct.jinja")
	want, err := tmpl.Render(toolChat, chattmpl.Options{Tools: []grammar.Tool{weather}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if got, err := tmpl.Render(toolChat, chattmpl.Options{Tools: []grammar.Tool{weather}}); err != nil || got != want {
					t.Errorf("concurrent render differs: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
