package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/chattmpl"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// handleChat serves POST /v1/chat/completions: messages (content as a string or text
// parts, and image_url parts on a worker with a projector), tools and tool_choice,
// response_format.
func (w *Worker) handleChat(rw http.ResponseWriter, r *http.Request) error {
	var req wire.ChatCompletionRequest
	if err := decodeBody(rw, r, &req); err != nil {
		var partErr *wire.PartError
		if errors.As(err, &partErr) {
			return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "messages: %v", partErr)
		}
		return err
	}
	e, err := w.ready(req.Model)
	if err != nil {
		return err
	}
	msgs, images, err := chatMessages(req.Messages, e)
	if err != nil {
		return err
	}
	if err := refuseUnsupported(&req.SamplingParams); err != nil {
		return err
	}
	sampling, err := samplingFrom(&req.SamplingParams, e.ContextSize())
	if err != nil {
		return err
	}
	tools, mode, err := chatTools(&req)
	if err != nil {
		return err
	}
	if sampling.Grammar, err = responseGrammar(req.ResponseFormat); err != nil {
		return err
	}
	var calls *toolCalls
	if mode != nil {
		if sampling.Grammar != "" && mode.forced {
			return badField("response_format and a required tool call cannot both constrain the answer: drop one")
		}
		if mode.forced {
			choice := mode.name
			if choice == "" {
				choice = wire.ToolChoiceRequired
			}
			if sampling.Grammar, err = grammar.ToolCall(tools.grammar, choice); err != nil {
				return schemaError("tools", err)
			}
		}
		calls = &toolCalls{forced: mode.forced, tools: tools.grammar, known: tools.names}
	}
	prompt, err := e.ChatPrompt(msgs, tools.engine)
	if err != nil {
		return badField("messages: the model's chat template refused them: %v", err)
	}
	if calls != nil {
		calls.jinja = prompt.Source == engine.TemplateJinja
	}
	sampling.Stop = append(sampling.Stop, prompt.Stops...)
	sampling.Images = images
	return w.generate(rw, r, e, prompt.Text, prompt.ParseSpecial, sampling, &req.SamplingParams, chatFormat, calls)
}

// refuseUnsupported answers 400 for OpenAI fields the worker cannot honour, naming
// them, rather than dropping them silently.
func refuseUnsupported(p *wire.SamplingParams) error {
	switch {
	case p.N != nil && *p.N != 1:
		return badField("n %d: one choice per request is supported; send %d requests", *p.N, *p.N)
	case len(p.LogitBias) > 0:
		return badField("logit_bias is not supported")
	case len(p.Logprobs) > 0 && string(p.Logprobs) != "false" && string(p.Logprobs) != "null" && string(p.Logprobs) != "0":
		return badField("logprobs is not supported")
	case p.TopLogprobs != nil:
		return badField("top_logprobs is not supported")
	}
	return nil
}

func badField(format string, args ...any) error {
	return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, format, args...)
}

// chatMessages checks the messages and turns them into the engine's; the images of
// image_url parts come back in prompt order, each message's text led by their markers.
func chatMessages(in []wire.ChatMessage, e *engine.Engine) ([]engine.Message, [][]byte, error) {
	if len(in) == 0 {
		return nil, nil, badField("messages is empty: send at least one {\"role\":\"user\",\"content\":...}")
	}
	msgs := make([]engine.Message, len(in))
	var images [][]byte
	for i, m := range in {
		switch m.Role {
		case "":
			return nil, nil, badField("messages[%d].role is empty: use system, user, assistant or tool", i)
		case "tool":
			if m.ToolCallID == "" {
				return nil, nil, badField("messages[%d] is a tool result without tool_call_id: name the call it answers", i)
			}
		}
		for field, text := range map[string]string{"content": m.Content, "role": m.Role, "name": m.Name, "tool_call_id": m.ToolCallID} {
			if err := checkNoNUL(fmt.Sprintf("messages[%d].%s", i, field), text); err != nil {
				return nil, nil, err
			}
		}
		content := m.Content
		if len(m.Images) > 0 {
			var imgs [][]byte
			var err error
			if content, imgs, err = withImages(e, i, content, m.Images); err != nil {
				return nil, nil, err
			}
			images = append(images, imgs...)
		}
		msg := engine.Message{Role: m.Role, Content: content, ToolCallID: m.ToolCallID, Name: m.Name}
		for j, c := range m.ToolCalls {
			if c.Function.Name == "" {
				return nil, nil, badField("messages[%d].tool_calls[%d].function.name is empty", i, j)
			}
			if args := strings.TrimSpace(c.Function.Arguments); args != "" && !json.Valid([]byte(args)) {
				return nil, nil, badField("messages[%d].tool_calls[%d].function.arguments is not valid JSON", i, j)
			}
			if err := checkNoNUL(fmt.Sprintf("messages[%d].tool_calls[%d]", i, j), c.Function.Name+c.Function.Arguments); err != nil {
				return nil, nil, err
			}
			msg.ToolCalls = append(msg.ToolCalls, engine.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
		}
		msgs[i] = msg
	}
	if len(images) > 0 {
		// The marker in a message's own text would stand for an image that is not there.
		for i, m := range in {
			if strings.Contains(m.Content, e.MediaMarker()) {
				return nil, nil, badField("messages[%d].content holds %q, which stands for an image on this worker: remove it", i, e.MediaMarker())
			}
		}
	}
	return msgs, images, nil
}

// requestTools is a request's tools in the forms the prompt and the grammar take.
type requestTools struct {
	engine  []engine.Tool
	grammar []grammar.Tool
	names   map[string]bool
}

// toolMode is how a request may call tools: forced (tool_choice required or a named
// function: the grammar makes the whole answer one call), or auto.
type toolMode struct {
	forced bool
	name   string // the function tool_choice names; "" = any
}

// chatTools checks tools and tool_choice. It returns a nil mode when no call may be made
// (no tools, or tool_choice none).
func chatTools(req *wire.ChatCompletionRequest) (requestTools, *toolMode, error) {
	var t requestTools
	choice := wire.ToolChoice{Mode: wire.ToolChoiceAuto}
	if req.ToolChoice != nil {
		choice = *req.ToolChoice
	}
	if len(req.Tools) == 0 {
		if choice.Mode == wire.ToolChoiceRequired || choice.Mode == "function" {
			return t, nil, badField("tool_choice %q needs tools: send the functions the model may call", choice.Mode)
		}
		return t, nil, nil
	}
	t.names = map[string]bool{}
	for i, tool := range req.Tools {
		fn := tool.Function
		switch {
		case tool.Type != "" && tool.Type != "function":
			return t, nil, badField("tools[%d].type %q: only \"function\" tools are supported", i, tool.Type)
		case fn.Name == "":
			return t, nil, badField("tools[%d].function.name is empty", i)
		case t.names[fn.Name]:
			return t, nil, badField("tools[%d].function.name %q is given twice", i, fn.Name)
		case len(fn.Parameters) > 0 && !json.Valid(fn.Parameters):
			return t, nil, badField("tools[%d].function.parameters is not valid JSON", i)
		}
		if err := checkNoNUL(fmt.Sprintf("tools[%d]", i), fn.Name+fn.Description+string(fn.Parameters)); err != nil {
			return t, nil, err
		}
		t.names[fn.Name] = true
		t.engine = append(t.engine, engine.Tool{Name: fn.Name, Description: fn.Description, Parameters: fn.Parameters})
		t.grammar = append(t.grammar, grammar.Tool{Name: fn.Name, Description: fn.Description, Parameters: fn.Parameters})
	}
	switch choice.Mode {
	case wire.ToolChoiceNone:
		return requestTools{}, nil, nil // the model is told of no tools and calls none
	case wire.ToolChoiceAuto:
		return t, &toolMode{}, nil
	case wire.ToolChoiceRequired:
		return t, &toolMode{forced: true}, nil
	case "function":
		if !t.names[choice.Function] {
			return t, nil, badField("tool_choice names %q, which is not among the tools", choice.Function)
		}
		return t, &toolMode{forced: true, name: choice.Function}, nil
	}
	return t, nil, badField("tool_choice %q: use auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}", choice.Mode)
}

// responseGrammar turns response_format into a grammar ("" for text).
func responseGrammar(f *wire.ResponseFormat) (string, error) {
	if f == nil {
		return "", nil
	}
	switch f.Type {
	case "", wire.FormatText:
		return "", nil
	case wire.FormatJSONObject:
		return grammar.JSONObject(), nil
	case wire.FormatJSONSchema:
		if f.JSONSchema == nil || len(bytes.TrimSpace(f.JSONSchema.Schema)) == 0 {
			return "", badField("response_format.json_schema.schema is missing: send the JSON Schema the answer must follow")
		}
		g, err := grammar.FromSchema(f.JSONSchema.Schema)
		if err != nil {
			return "", schemaError("response_format.json_schema.schema", err)
		}
		return g, nil
	}
	return "", badField("response_format.type %q: use text, json_object or json_schema", f.Type)
}

// schemaError answers a schema the grammar converter refuses, naming what it refused.
func schemaError(field string, err error) error {
	var unsupported *grammar.UnsupportedError
	if errors.As(err, &unsupported) {
		return badField("%s: %v (see docs/worker.md for the JSON Schema subset supported)", field, unsupported)
	}
	return badField("%s: %v", field, err)
}

// toolCalls finds an answer's tool calls. Forced, the whole answer is one call in the
// grammar's {"name","arguments"} form. Auto, a model with a Jinja template calls tools
// in its family's own format (chattmpl's parsers); with the fallback transcript, the
// answer is a call when it is one {"name","arguments"} object, or a list of them,
// naming known tools.
type toolCalls struct {
	forced bool
	jinja  bool
	tools  []grammar.Tool
	known  map[string]bool
}

// streamable is how much of a growing answer may go out as content now: the text before
// anything that is, or may still grow into, a tool call.
func (t *toolCalls) streamable(text string) int {
	switch {
	case t.forced:
		return 0
	case t.jinja:
		return chattmpl.Streamable(text)
	}
	trimmed := strings.TrimLeft(text, " \t\r\n")
	if trimmed == "" || trimmed[0] == '{' || trimmed[0] == '[' {
		return 0
	}
	return len(text)
}

// parse returns the calls in a finished answer and the content beside them, or false
// when the answer is plain text.
func (t *toolCalls) parse(text string) (calls []wire.ToolCall, content string, ok bool) {
	if t.jinja && !t.forced {
		found, rest := chattmpl.ParseToolCalls(text, t.tools)
		for i, c := range found {
			id := c.ID
			if id == "" {
				id = newID("call_")
			}
			idx := i
			calls = append(calls, wire.ToolCall{Index: &idx, ID: id, Type: "function",
				Function: wire.ToolCallFunction{Name: c.Name, Arguments: c.Arguments}})
		}
		return calls, rest, len(calls) > 0
	}
	text = strings.TrimSpace(text)
	var objs []json.RawMessage
	switch {
	case strings.HasPrefix(text, "["):
		if json.Unmarshal([]byte(text), &objs) != nil {
			return nil, "", false
		}
	case strings.HasPrefix(text, "{"):
		objs = []json.RawMessage{json.RawMessage(text)}
	default:
		return nil, "", false
	}
	for i, raw := range objs {
		name, args, err := grammar.ParseToolCall(string(raw))
		if err != nil || !t.known[name] {
			return nil, "", false
		}
		idx := i
		calls = append(calls, wire.ToolCall{Index: &idx, ID: newID("call_"), Type: "function",
			Function: wire.ToolCallFunction{Name: name, Arguments: string(args)}})
	}
	return calls, "", len(calls) > 0
}
