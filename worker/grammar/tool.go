package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Tool is a function the model may call: OpenAI's tools[].function.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"` // JSON Schema of the arguments; empty = none
}

// ErrToolChoice is matched when ToolCall gets no tool to force: no tools, an unknown
// name, or a choice ("auto", "none") that leaves the decision to the model.
var ErrToolChoice = errors.New("no tool call to force")

// ErrNotToolCall is matched when ParseToolCall's text is not a call in ToolCall's format.
var ErrNotToolCall = errors.New("not a tool call")

// ToolCall is a grammar forcing one call, written exactly as
//
//	{"name": "<tool name>", "arguments": <an object valid for that tool's parameters>}
//
// (compact, or with single spaces after ':' and ','). choice is "required" (any of the
// tools) or a tool's name (that one; a tool named "required" loses to the keyword).
// Parameter schemas follow FromSchema's rules; their errors are returned wrapped with
// the tool's name (errors.As still finds an *UnsupportedError). ParseToolCall reads
// the result back.
func ToolCall(tools []Tool, choice string) (string, error) {
	if len(tools) == 0 {
		return "", fmt.Errorf("%w: the request lists no tools", ErrToolChoice)
	}
	seen := map[string]bool{}
	for _, t := range tools {
		if t.Name == "" || seen[t.Name] {
			return "", fmt.Errorf("%w: tool names must be present and distinct (%q)", ErrSchema, t.Name)
		}
		seen[t.Name] = true
	}
	picked := tools
	switch choice {
	case "auto", "none", "":
		return "", fmt.Errorf("%w: tool_choice %q leaves the call to the model", ErrToolChoice, choice)
	}
	if choice != "required" {
		picked = nil
		for _, t := range tools {
			if t.Name == choice {
				picked = []Tool{t}
			}
		}
		if picked == nil {
			return "", fmt.Errorf("%w: tool_choice %q names no tool in the request", ErrToolChoice, choice)
		}
	}
	c := newConverter()
	ws := c.prim("ws")
	var calls []string
	for i, t := range picked {
		args := ruleName(t.Name) + "-args"
		if params := bytes.TrimSpace(t.Parameters); len(params) == 0 || string(params) == "null" {
			args = c.unique(args)
			c.set(args, `"{" `+ws+` "}"`) // no parameters: no arguments
		} else {
			doc, err := decode(params)
			if err != nil {
				return "", fmt.Errorf("tool %q parameters: %w: %w", t.Name, ErrSchema, err)
			}
			args = c.unique(args)
			if err := c.convertDoc(doc, i, args); err != nil {
				return "", fmt.Errorf("tool %q parameters: %w", t.Name, err)
			}
		}
		calls = append(calls, join(lit(jsonString(t.Name)+","), ws, lit(`"arguments":`), ws, args))
	}
	c.set("root", join(`"{"`, ws, lit(`"name":`), ws, group(calls), ws, `"}"`))
	return c.String(), nil
}

// ParseToolCall reads a call written in ToolCall's format: the tool's name and its
// arguments, compacted. Errors match ErrNotToolCall (for instance when generation
// stopped before the grammar completed).
func ParseToolCall(text string) (name string, args json.RawMessage, err error) {
	var call struct {
		Name      *string         `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal([]byte(text), &call); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrNotToolCall, err)
	}
	if call.Name == nil || *call.Name == "" {
		return "", nil, fmt.Errorf("%w: no name", ErrNotToolCall)
	}
	if !strings.HasPrefix(string(call.Arguments), "{") {
		return "", nil, fmt.Errorf("%w: arguments must be a JSON object", ErrNotToolCall)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, call.Arguments); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrNotToolCall, err)
	}
	return *call.Name, b.Bytes(), nil
}
