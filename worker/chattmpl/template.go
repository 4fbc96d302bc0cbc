// Package chattmpl renders a model's own Jinja chat template into a prompt and reads
// tool calls back out of what the model writes.
package chattmpl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"

	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// Message is one chat turn, OpenAI's shape.
type Message struct {
	Role       string // system, user, assistant, tool
	Content    string
	ToolCalls  []ToolCall // an assistant's calls
	ToolCallID string     // a tool message: the call it answers
	Name       string     // a tool message: the function's name (optional)
}

// ToolCall is one function call of an assistant message.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // a JSON object as text, as OpenAI carries it
}

// Options are a render's variables.
type Options struct {
	AddGenerationPrompt bool
	Tools               []grammar.Tool // offered as tools (OpenAI's [{type, function}]); none = undefined
	BOS, EOS            string         // bos_token and eos_token, the model's texts for them
	// Vars are more template variables (enable_thinking, date_string, …); they win
	// over the ones above.
	Vars map[string]any
}

// ErrTemplate is matched when the template cannot be used: it does not parse, or the
// engine fails on it. The caller falls back (llama.cpp's built-in templates, then a
// plain transcript).
var ErrTemplate = errors.New("the chat template cannot be used")

// ErrArguments is matched when an assistant message's tool-call arguments are not a
// JSON object, which templates that show them as one need: the request's fault.
var ErrArguments = errors.New("tool call arguments must be a JSON object")

// RaisedError is the template refusing the conversation through raise_exception
// ("Conversation roles must alternate…", "System role not supported"): the request,
// not the template, is at fault; llama-server answers 400 with the message.
type RaisedError struct {
	Message string
}

func (e *RaisedError) Error() string {
	return "the chat template refused the conversation: " + e.Message
}

// Template is a parsed chat template, safe for concurrent use. It drives
// ardanlabs/jinja, the engine under yzma's pkg/template, directly: pkg/template
// passes no bos_token, eos_token or other variables, gives no typed refusal, and
// renders with the engine's whitespace rules rather than transformers'.
type Template struct {
	t *jinja.Template
	// stringArgs: the template writes tool-call arguments as text (DeepSeek's
	// `'…' + arguments`) rather than as an object (`arguments | tojson`).
	stringArgs bool
}

// Parse compiles a template and learns how it wants tool-call arguments.
func Parse(src string) (t *Template, err error) {
	defer recoverAsTemplateError(&err)
	norm, err := normalize(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	jt, err := jinja.Compile(norm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	t = &Template{t: jt}
	t.stringArgs = t.wantsStringArgs()
	return t, nil
}

// Render parses src and renders msgs; see Template.Render.
func Render(src string, msgs []Message, opts Options) (string, error) {
	t, err := Parse(src)
	if err != nil {
		return "", err
	}
	return t.Render(msgs, opts)
}

// Render renders msgs. Errors match ErrTemplate (fall back), are a *RaisedError, or
// match ErrArguments. The prompt holds the BOS text where the template writes it: a
// caller whose tokenizer adds BOS itself strips a leading opts.BOS first, as
// llama-server does.
//
// Known differences from Python's Jinja (Hugging Face): tojson writes compact JSON
// with keys sorted and <, >, & escaped, where transformers writes ", " and ": "
// separators in insertion order; None prints as "".
func (t *Template) Render(msgs []Message, opts Options) (out string, err error) {
	defer recoverAsTemplateError(&err)
	vars := map[string]jinja.Value{
		"add_generation_prompt": jinja.NewBool(opts.AddGenerationPrompt),
		"bos_token":             jinja.NewString(opts.BOS),
		"eos_token":             jinja.NewString(opts.EOS),
		"raise_exception":       jinja.NewCallable("raise_exception", raise),
	}
	list := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		if list[i], err = t.message(m); err != nil {
			return "", err
		}
	}
	vars["messages"] = jinja.NewList(list)
	if len(opts.Tools) > 0 {
		tools := make([]jinja.Value, len(opts.Tools))
		for i, tool := range opts.Tools {
			if tools[i], err = toolValue(tool); err != nil {
				return "", err
			}
		}
		vars["tools"] = jinja.NewList(tools)
	}
	for k, v := range opts.Vars {
		vars[k] = jinja.FromGoValue(v)
	}
	out, err = t.t.RenderValues(vars)
	if err != nil {
		if raised, ok := errors.AsType[*RaisedError](err); ok {
			return "", raised
		}
		return "", fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	return out, nil
}

// raise is raise_exception, typed so callers can tell a refusal from a failure.
func raise(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	msg := "raise_exception"
	if len(args) > 0 && args[0].IsString() {
		msg = args[0].AsString()
	}
	return jinja.Undefined(), &RaisedError{Message: msg}
}

// recoverAsTemplateError turns an engine panic on a strange template into ErrTemplate:
// the template comes from a model file, and must not take the worker down.
func recoverAsTemplateError(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: the template engine failed: %v", ErrTemplate, r)
	}
}

// message is m as the dict templates read: role, content (None for an assistant's
// calls without text), and only the keys that apply, since templates test
// `'tool_calls' in message`.
func (t *Template) message(m Message) (jinja.Value, error) {
	v := jinja.NewDict()
	d := v.AsDict()
	d.Set("role", jinja.NewString(m.Role))
	if m.Content == "" && len(m.ToolCalls) > 0 {
		d.Set("content", jinja.None())
	} else {
		d.Set("content", jinja.NewString(m.Content))
	}
	if m.Name != "" {
		d.Set("name", jinja.NewString(m.Name))
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]jinja.Value, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			args := jinja.NewString(c.Arguments)
			if !t.stringArgs {
				a, err := jsonValue([]byte(c.Arguments))
				if err != nil || !a.IsDict() {
					return jinja.Value{}, fmt.Errorf("%w: call of %q: %s", ErrArguments, c.Name, c.Arguments)
				}
				args = a
			}
			fn := jinja.NewDict()
			fn.AsDict().Set("name", jinja.NewString(c.Name))
			fn.AsDict().Set("arguments", args)
			call := jinja.NewDict()
			call.AsDict().Set("id", jinja.NewString(c.ID))
			call.AsDict().Set("type", jinja.NewString("function"))
			call.AsDict().Set("function", fn)
			calls[i] = call
		}
		d.Set("tool_calls", jinja.NewList(calls))
	}
	if m.ToolCallID != "" {
		d.Set("tool_call_id", jinja.NewString(m.ToolCallID))
	}
	return v, nil
}

// toolValue is a tool as OpenAI (and transformers) lists it, keys in that order.
func toolValue(tool grammar.Tool) (jinja.Value, error) {
	fn := jinja.NewDict()
	fn.AsDict().Set("name", jinja.NewString(tool.Name))
	if tool.Description != "" {
		fn.AsDict().Set("description", jinja.NewString(tool.Description))
	}
	params := []byte(`{"type":"object","properties":{}}`)
	if p := bytes.TrimSpace(tool.Parameters); len(p) > 0 && string(p) != "null" {
		params = p
	}
	pv, err := jsonValue(params)
	if err != nil {
		return jinja.Value{}, fmt.Errorf("tool %q parameters: %w", tool.Name, err)
	}
	fn.AsDict().Set("parameters", pv)
	v := jinja.NewDict()
	v.AsDict().Set("type", jinja.NewString("function"))
	v.AsDict().Set("function", fn)
	return v, nil
}

// jsonValue decodes JSON into template values, keeping object keys in order
// (templates that loop over properties show them as written).
func jsonValue(data []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return jinja.Value{}, err
	}
	if dec.More() {
		return jinja.Value{}, errors.New("data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Value{}, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '[' {
			var items []jinja.Value
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				items = append(items, v)
			}
			_, err := dec.Token()
			return jinja.NewList(items), err
		}
		d := jinja.NewDict()
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return jinja.Value{}, err
			}
			v, err := decodeValue(dec)
			if err != nil {
				return jinja.Value{}, err
			}
			d.AsDict().Set(kt.(string), v)
		}
		_, err := dec.Token()
		return d, err
	case json.Number:
		if n, err := tok.Int64(); err == nil {
			return jinja.NewInt(n), nil
		}
		f, _ := tok.Float64()
		return jinja.NewFloat(f), nil
	case string:
		return jinja.NewString(tok), nil
	case bool:
		return jinja.NewBool(tok), nil
	}
	return jinja.None(), nil
}

// wantsStringArgs probes the template with a call whose arguments are an object: a
// template that shows them as JSON takes objects (transformers' convention); one that
// cannot (it concatenates them as text) gets the JSON text instead, as llama.cpp's
// minja does.
func (t *Template) wantsStringArgs() bool {
	probe := func(stringArgs bool) string {
		p := &Template{t: t.t, stringArgs: stringArgs}
		out, err := p.Render([]Message{
			{Role: "user", Content: "probe"},
			{Role: "assistant", ToolCalls: []ToolCall{{ID: "probe0001", Name: "probe_fn", Arguments: `{"probe_arg":"probe_val"}`}}},
		}, Options{})
		if err != nil {
			return ""
		}
		return out
	}
	if strings.Contains(probe(false), `"probe_arg"`) {
		return false
	}
	return strings.Contains(probe(true), "probe_val")
}
