package chattmpl_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/beekeeper-hive/beekeeper/worker/chattmpl"
	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// TestParseToolCalls reads the tool-call formats of the model families.
func TestParseToolCalls(t *testing.T) {
	search := grammar.Tool{Name: "search", Parameters: json.RawMessage(`{"type":"object","properties":{
		"query":{"type":"string"},"limit":{"type":"integer"},"exact":{"type":"boolean"},"tags":{"type":["array","null"]},"code":{"type":"string"}}}`)}
	tools := []grammar.Tool{weather, search}
	call := func(id, name, args string) chattmpl.ToolCall {
		return chattmpl.ToolCall{ID: id, Name: name, Arguments: args}
	}
	for _, tc := range []struct {
		name, text  string
		tools       []grammar.Tool
		want        []chattmpl.ToolCall
		wantContent string
	}{
		{"Hermes / Qwen", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Paris"}`)}, "Let me check."},
		{"Hermes, two calls, arguments as text", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Oslo\\\"}\"}\n</tool_call>\n" +
			"<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"rain\", \"limit\": 3}}\n</tool_call>", tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Oslo"}`), call("", "search", `{"query":"rain","limit":3}`)}, ""},
		{"Hermes, closing tag never written", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}", tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Rome"}`)}, ""},
		{"Llama 3.1 JSON", `{"name": "get_weather", "parameters": {"city": "Paris"}}`, tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Paris"}`)}, ""},
		{"Llama 3.x, python tag and two calls", "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"A\"}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"B\"}}", tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"A"}`), call("", "get_weather", `{"city":"B"}`)}, ""},
		{"Mistral v0.3", `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}]`, tools,
			[]chattmpl.ToolCall{call("abc123def", "get_weather", `{"city":"Paris"}`)}, ""},
		{"Mistral Small 3.2", `Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]search[ARGS]{"query": "x"}`, tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Paris"}`), call("", "search", `{"query":"x"}`)}, "Sure."},
		{"DeepSeek", "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>" +
			"<｜tool▁call▁begin｜>function<｜tool▁sep｜>search\n```json\n{\"query\": \"sun\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", tools,
			[]chattmpl.ToolCall{call("", "get_weather", `{"city":"Paris"}`), call("", "search", `{"query":"sun"}`)}, "I will look."},
		// yzma reads Qwen3-Coder's XML with every value as text; the schema types them.
		{"Qwen3-Coder XML through yzma", "<tool_call>\n<function=search>\n<parameter=query>\nGo\n</parameter>\n<parameter=limit>\n10\n</parameter>\n" +
			"<parameter=exact>\ntrue\n</parameter>\n<parameter=tags>\n[\"a\", \"b\"]\n</parameter>\n<parameter=code>\n42\n</parameter>\n</function>\n</tool_call>", tools,
			[]chattmpl.ToolCall{call("", "search", `{"code":"42","exact":true,"limit":10,"query":"Go","tags":["a","b"]}`)}, ""},
		{"truncated JSON repaired through yzma", "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"limit\": 5}\n</tool_call>", tools,
			[]chattmpl.ToolCall{call("", "search", `{"limit":5}`)}, ""},
		{"plain text", "The weather is fine.", tools, nil, "The weather is fine."},
		{"a JSON answer is not a call", `{"name": "Bob", "age": 3}`, nil, nil, `{"name": "Bob", "age": 3}`},
		{"unknown tool stays text", `{"name": "launch", "parameters": {}}`, tools, nil, `{"name": "launch", "parameters": {}}`},
		{"no tools listed: any name", `{"name": "launch", "parameters": {}}`, nil, []chattmpl.ToolCall{call("", "launch", `{}`)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, content := chattmpl.ParseToolCalls(tc.text, tc.tools)
			if !reflect.DeepEqual(calls, tc.want) || content != tc.wantContent {
				t.Errorf("got %+v, %q\nwant %+v, %q", calls, content, tc.want, tc.wantContent)
			}
		})
	}
}

// TestRenderedCallParsesBack: what a template shows as the assistant's call is what
// the parser reads from a model writing the same.
func TestRenderedCallParsesBack(t *testing.T) {
	for _, text := range []string{
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>", // Qwen 2.5's rendering
		"{\"name\": \"get_weather\", \"parameters\": {\"city\":\"Paris\"}}",                           // Llama 3.1's
	} {
		calls, _ := chattmpl.ParseToolCalls(text, []grammar.Tool{weather})
		if len(calls) != 1 || calls[0].Name != toolChat[2].ToolCalls[0].Name || calls[0].Arguments != `{"city":"Paris"}` {
			t.Errorf("%q: %+v", text, calls)
		}
	}
}

// TestStreamable holds back what is, or may become, a tool call.
func TestStreamable(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int
	}{
		{"Hello there", 11},
		{"Let me look.<tool_call>{", 12},
		{"Let me look.<tool_", 12},
		{"Let me look.<", 12},
		{"a [TOOL_CA", 2},
		{"ok<｜tool▁calls", 2},
		{`{"name": "get_weather"`, 0},
		{"  \n", 0},
		{"x < y", 5},
	} {
		if got := chattmpl.Streamable(tc.text); got != tc.want {
			t.Errorf("Streamable(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}
