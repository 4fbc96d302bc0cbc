package chattmpl

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	"github.com/hybridgroup/yzma/pkg/message"

	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// Markers of the tool-call formats read here.
const (
	hermesOpen     = "<tool_call>"
	hermesClose    = "</tool_call>"
	mistralCalls   = "[TOOL_CALLS]"
	mistralArgs    = "[ARGS]"
	pythonTag      = "<|python_tag|>"
	deepseekCalls  = "<｜tool▁calls▁begin｜>"
	deepseekCall   = "<｜tool▁call▁begin｜>"
	deepseekSep    = "<｜tool▁sep｜>"
	deepseekEnd    = "<｜tool▁call▁end｜>"
	deepseekAllEnd = "<｜tool▁calls▁end｜>"
)

// ParseToolCalls finds the tool calls in a model's output and returns them with the
// text outside them, trimmed. Arguments are compact JSON objects with their types
// kept; IDs are set only where the format carries one (Mistral), so the caller
// assigns the others. It reads, in order:
//
//   - Hermes / Qwen 2.5 / Qwen 3: <tool_call>{"name": …, "arguments": {…}}</tool_call>, repeated
//   - Mistral: [TOOL_CALLS] [{"name": …, "arguments": {…}, "id": …}] (v0.3) and
//     [TOOL_CALLS]name[ARGS]{…} (Small 3.2, Devstral)
//   - DeepSeek R1 / V3: <｜tool▁call▁begin｜>function<｜tool▁sep｜>name ```json {…} ```<｜tool▁call▁end｜>
//   - Llama 3.x: the whole output one JSON object {"name": …, "parameters": {…}},
//     after an optional <|python_tag|>; several separated by ";"
//   - anything else yzma's message.ParseToolCalls reads (Qwen3-Coder XML, GLM,
//     Gemma 4, gpt-oss); it gives values as text, typed back here from the tool's
//     parameter schema.
//
// With tools given, a call to a function not among them makes the whole output plain
// text (no calls): a model answering in JSON is not mistaken for a call.
func ParseToolCalls(text string, tools []grammar.Tool) (calls []ToolCall, content string) {
	for _, parse := range []func(string) ([]ToolCall, string, bool){parseHermes, parseMistral, parseDeepSeek, parseLlama} {
		if calls, content, ok := parse(text); ok {
			return known(calls, content, text, tools)
		}
	}
	found := message.ParseToolCalls(text)
	if len(found) == 0 {
		return nil, strings.TrimSpace(text)
	}
	for _, f := range found {
		calls = append(calls, ToolCall{Name: f.Function.Name, Arguments: typedArguments(f.Function.Arguments, schemaOf(f.Function.Name, tools))})
	}
	return known(calls, strings.TrimSpace(message.StripMarkup(text)), text, tools)
}

// known keeps the calls when every one names an offered tool (or none were listed).
func known(calls []ToolCall, content, text string, tools []grammar.Tool) ([]ToolCall, string) {
	if len(tools) > 0 {
		for _, c := range calls {
			if !slices.ContainsFunc(tools, func(t grammar.Tool) bool { return t.Name == c.Name }) {
				return nil, strings.TrimSpace(text)
			}
		}
	}
	return calls, strings.TrimSpace(content)
}

// call reads one {"name": …, "arguments"|"parameters": {…}} object; arguments given
// as a JSON string holding an object are accepted too. needArgs refuses an object
// without them (a bare JSON answer that happens to have a "name").
func call(raw []byte, needArgs bool) (ToolCall, bool) {
	var c struct {
		Name       string          `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
		ID         string          `json:"id"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Name == "" {
		return ToolCall{}, false
	}
	args := c.Arguments
	if args == nil {
		args = c.Parameters
	}
	if needArgs && args == nil {
		return ToolCall{}, false
	}
	args, ok := object(args)
	return ToolCall{ID: c.ID, Name: c.Name, Arguments: string(args)}, ok
}

// object compacts a JSON object, or the object inside a JSON string; absent is {}.
func object(raw json.RawMessage) (json.RawMessage, bool) {
	if len(raw) == 0 {
		return json.RawMessage("{}"), true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil || !bytes.HasPrefix(b.Bytes(), []byte("{")) {
		return nil, false
	}
	return b.Bytes(), true
}

func parseHermes(text string) ([]ToolCall, string, bool) {
	if !strings.Contains(text, hermesOpen) {
		return nil, "", false
	}
	var calls []ToolCall
	var content strings.Builder
	rest := text
	for {
		before, after, found := strings.Cut(rest, hermesOpen)
		content.WriteString(before)
		if !found {
			break
		}
		body, tail, closed := strings.Cut(after, hermesClose)
		c, ok := call([]byte(strings.TrimSpace(body)), false)
		if !ok {
			return nil, "", false // not JSON inside (Qwen3-Coder's XML): another parser's
		}
		calls = append(calls, c)
		if !closed { // generation stopped at the end of the JSON
			break
		}
		rest = tail
	}
	return calls, content.String(), true
}

func parseMistral(text string) ([]ToolCall, string, bool) {
	content, rest, found := strings.Cut(text, mistralCalls)
	if !found {
		return nil, "", false
	}
	var calls []ToolCall
	if trimmed := strings.TrimSpace(rest); strings.HasPrefix(trimmed, "[") {
		var list []json.RawMessage
		if json.Unmarshal([]byte(trimmed), &list) != nil {
			return nil, "", false
		}
		for _, raw := range list {
			c, ok := call(raw, false)
			if !ok {
				return nil, "", false
			}
			calls = append(calls, c)
		}
		return calls, content, len(calls) > 0
	}
	// name[ARGS]{…}, each call after its own [TOOL_CALLS].
	for _, part := range strings.Split(rest, mistralCalls) {
		name, args, ok := strings.Cut(part, mistralArgs)
		if !ok {
			return nil, "", false
		}
		obj, ok := object(json.RawMessage(strings.TrimSpace(args)))
		if !ok || strings.TrimSpace(name) == "" {
			return nil, "", false
		}
		calls = append(calls, ToolCall{Name: strings.TrimSpace(name), Arguments: string(obj)})
	}
	return calls, content, true
}

func parseDeepSeek(text string) ([]ToolCall, string, bool) {
	content, rest, found := strings.Cut(text, deepseekCalls)
	if !found {
		return nil, "", false
	}
	rest, _, _ = strings.Cut(rest, deepseekAllEnd)
	var calls []ToolCall
	for _, part := range strings.Split(rest, deepseekCall)[1:] {
		part, _, _ = strings.Cut(part, deepseekEnd)
		_, part, ok := strings.Cut(part, deepseekSep) // the type, "function"
		if !ok {
			return nil, "", false
		}
		name, args, _ := strings.Cut(part, "\n")
		args = strings.TrimSpace(args)
		args = strings.TrimPrefix(args, "```json")
		args = strings.TrimSuffix(strings.TrimSpace(args), "```")
		obj, ok := object(json.RawMessage(strings.TrimSpace(args)))
		if !ok {
			return nil, "", false
		}
		calls = append(calls, ToolCall{Name: strings.TrimSpace(name), Arguments: string(obj)})
	}
	return calls, content, len(calls) > 0
}

func parseLlama(text string) ([]ToolCall, string, bool) {
	trimmed := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), pythonTag))
	if !strings.HasPrefix(trimmed, "{") {
		return nil, "", false
	}
	var calls []ToolCall
	dec := json.NewDecoder(strings.NewReader(trimmed))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, "", false
		}
		c, ok := call(raw, true)
		if !ok {
			return nil, "", false
		}
		calls = append(calls, c)
		rest := strings.TrimSpace(trimmed[dec.InputOffset():])
		if rest == "" {
			return calls, "", true
		}
		if !strings.HasPrefix(rest, ";") {
			return nil, "", false
		}
		trimmed = strings.TrimSpace(rest[1:])
		dec = json.NewDecoder(strings.NewReader(trimmed))
	}
}

// schemaOf is the parameters schema of the named tool, nil when unknown.
func schemaOf(name string, tools []grammar.Tool) json.RawMessage {
	for _, t := range tools {
		if t.Name == name {
			return t.Parameters
		}
	}
	return nil
}

// typedArguments writes text-valued arguments as a JSON object, giving each value
// the type its property declares when the text reads as one (10 → 10 for an
// integer, "true" → true for a boolean); otherwise the value stays a string.
func typedArguments(args map[string]string, schema json.RawMessage) string {
	var params struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(schema, &params) // no schema: every value stays a string
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys) // yzma's map has no order
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		b.Write(typedValue(args[k], params.Properties[k].Type))
	}
	b.WriteByte('}')
	return b.String()
}

// typedValue is v as JSON of the declared type when it parses as one, else a string.
func typedValue(v string, declared any) []byte {
	var types []string
	switch t := declared.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok {
				types = append(types, s)
			}
		}
	}
	var parsed any
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	if dec.Decode(&parsed) == nil && !dec.More() {
		var kind string
		switch p := parsed.(type) {
		case nil:
			kind = "null"
		case bool:
			kind = "boolean"
		case json.Number:
			kind = "number"
			if _, err := p.Int64(); err == nil {
				kind = "integer"
			}
		case []any:
			kind = "array"
		case map[string]any:
			kind = "object"
		}
		for _, t := range types {
			var b bytes.Buffer
			if (t == kind || t == "number" && kind == "integer") && json.Compact(&b, []byte(v)) == nil {
				return b.Bytes()
			}
		}
	}
	s, _ := json.Marshal(v)
	return s
}

// callStarts are the texts that open a tool call in the formats ParseToolCalls reads.
var callStarts = []string{hermesOpen, mistralCalls, pythonTag, deepseekCalls, "<function=", "<|tool_call>"}

// Streamable is how much of a growing output may be streamed as content when tools
// are offered: the text before anything that is, or may still grow into, the start
// of a tool call. An output that starts with "{" (after spaces) may be a Llama-style
// call and is held back whole; the caller parses the rest when generation ends.
func Streamable(text string) int {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" || strings.HasPrefix(trimmed, "{") {
		return 0
	}
	n := len(text)
	for _, m := range callStarts {
		if i := strings.Index(text, m); i >= 0 {
			n = min(n, i)
		}
		for k := min(len(m)-1, len(text)); k > 0; k-- {
			if strings.HasSuffix(text, m[:k]) {
				n = min(n, len(text)-k)
				break
			}
		}
	}
	return n
}
