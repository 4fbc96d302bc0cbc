package engine

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/worker/chattmpl"
	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// Message is one chat message: an assistant's may carry tool calls, a tool's answers
// the call ToolCallID names.
type Message struct {
	Role       string
	Content    string
	ToolCalls  []ToolCall
	ToolCallID string
	Name       string
}

// ToolCall is a call an assistant message made; Arguments is a JSON text.
type ToolCall struct {
	ID, Name, Arguments string
}

// Tool is a function a chat may call; Parameters is its JSON Schema.
type Tool struct {
	Name, Description string
	Parameters        []byte
}

// FallbackStop ends an assistant turn of the fallback transcript: the model starting the
// user's next line.
const FallbackStop = "\nUser:"

// Prompt is a chat rendered for the model.
type Prompt struct {
	Text         string
	ParseSpecial bool     // the text names special tokens (a template wrote it)
	Stops        []string // stop strings the format adds
	Source       string   // TemplateJinja, TemplateModel or TemplateFallback
}

// ChatPrompt turns messages (and the tools they may call) into a prompt: the model's own
// template rendered with Jinja (tools included, as the template lays them out); else,
// without tools, llama.cpp's built-in rendering of it; else the fallback transcript:
//
//	<tools preamble, when tools are given>
//	<system messages, each followed by a blank line>
//	User: <text>
//	Assistant: <text, or its tool calls as {"name":…,"arguments":…} lines>
//	Tool result (<name or call id>): <text>
//	...
//	Assistant:
//
// whose extra stop string is FallbackStop, so the model does not play the user's part.
// Errors are the template's own refusals (*chattmpl.RaisedError, or arguments that are
// not a JSON object): the request's fault.
func (e *Engine) ChatPrompt(msgs []Message, tools []Tool) (Prompt, error) {
	if hasNUL(msgs) { // a NUL would abort llama.cpp: Prepare refuses it, with its name
		return Prompt{Text: FallbackPrompt(msgs, tools), Source: TemplateFallback}, nil
	}
	if e.jinja != nil {
		text, err := e.jinja.Render(jinjaMessages(msgs), chattmpl.Options{AddGenerationPrompt: true,
			Tools: jinjaTools(tools), BOS: e.bosText, EOS: e.eosText})
		var raised *chattmpl.RaisedError
		switch {
		case err == nil:
			// The tokenizer adds BOS itself: a template's own would make two.
			if e.bosText != "" && llama.VocabGetAddBOS(e.vocab) {
				text = strings.TrimPrefix(text, e.bosText)
			}
			return Prompt{Text: text, ParseSpecial: true, Source: TemplateJinja}, nil
		case errors.As(err, &raised), errors.Is(err, chattmpl.ErrArguments):
			return Prompt{}, err
		}
		// ErrTemplate: the engine could not run it; llama.cpp's built-ins may.
	}
	if e.template != "" && len(tools) == 0 && !usesTools(msgs) {
		if p, ok := applyTemplate(e.template, msgs); ok {
			return Prompt{Text: p, ParseSpecial: true, Source: TemplateModel}, nil
		}
	}
	return Prompt{Text: FallbackPrompt(msgs, tools), Stops: []string{FallbackStop}, Source: TemplateFallback}, nil
}

func jinjaMessages(msgs []Message) []chattmpl.Message {
	out := make([]chattmpl.Message, len(msgs))
	for i, m := range msgs {
		out[i] = chattmpl.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID, Name: m.Name}
		for _, c := range m.ToolCalls {
			out[i].ToolCalls = append(out[i].ToolCalls, chattmpl.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments})
		}
	}
	return out
}

func jinjaTools(tools []Tool) []grammar.Tool {
	out := make([]grammar.Tool, len(tools))
	for i, t := range tools {
		out[i] = grammar.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters}
	}
	return out
}

// tokenText is a special token's text ("<s>"), or "" for none.
func tokenText(vocab llama.Vocab, tok llama.Token) string {
	if tok < 0 {
		return ""
	}
	buf := make([]byte, 64)
	n := llama.TokenToPiece(vocab, tok, buf, 0, true)
	if n <= 0 || int(n) > len(buf) {
		return ""
	}
	return string(buf[:n])
}

func usesTools(msgs []Message) bool {
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 || m.Role == "tool" {
			return true
		}
	}
	return false
}

// ToolCallFormat is how the fallback transcript asks a model to call a tool, and the
// form ParseToolCalls reads: one JSON object per call.
const ToolCallFormat = `{"name": "<tool name>", "arguments": {<the arguments>}}`

// FallbackPrompt is the documented transcript for models without a chat template.
func FallbackPrompt(msgs []Message, tools []Tool) string {
	var b strings.Builder
	if len(tools) > 0 {
		b.WriteString("You can call these tools:\n")
		for _, t := range tools {
			line, _ := json.Marshal(struct {
				Name        string          `json:"name"`
				Description string          `json:"description,omitempty"`
				Parameters  json.RawMessage `json:"parameters,omitempty"`
			}{t.Name, t.Description, json.RawMessage(t.Parameters)})
			b.Write(line)
			b.WriteString("\n")
		}
		b.WriteString("To call a tool, answer with only " + ToolCallFormat + "\n\n")
	}
	for _, m := range msgs {
		text := strings.TrimSpace(m.Content)
		switch m.Role {
		case "system", "developer":
			b.WriteString(text)
			b.WriteString("\n\n")
		case "assistant":
			b.WriteString("Assistant: ")
			b.WriteString(text)
			for i, c := range m.ToolCalls {
				if i > 0 || text != "" {
					b.WriteString("\n")
				}
				args := strings.TrimSpace(c.Arguments)
				if args == "" {
					args = "{}"
				}
				b.WriteString(`{"name": `)
				name, _ := json.Marshal(c.Name)
				b.Write(name)
				b.WriteString(`, "arguments": `)
				b.WriteString(args)
				b.WriteString("}")
			}
			b.WriteString("\n")
		case "tool":
			who := m.Name
			if who == "" {
				who = m.ToolCallID
			}
			b.WriteString("Tool result (" + who + "): ")
			b.WriteString(text)
			b.WriteString("\n")
		default:
			b.WriteString("User: ")
			b.WriteString(text)
			b.WriteString("\n")
		}
	}
	b.WriteString("Assistant:")
	return b.String()
}

func applyTemplate(tmpl string, msgs []Message) (string, bool) {
	chat := make([]llama.ChatMessage, len(msgs))
	size := 0
	for i, m := range msgs {
		chat[i] = llama.NewChatMessage(m.Role, m.Content)
		size += len(m.Role) + len(m.Content)
	}
	buf := make([]byte, 2*size+512)
	n := llama.ChatApplyTemplate(tmpl, chat, true, buf)
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = llama.ChatApplyTemplate(tmpl, chat, true, buf)
	}
	if n <= 0 || int(n) > len(buf) {
		return "", false // a template llama.cpp does not know (Jinja-only)
	}
	return string(buf[:n]), true
}

func hasNUL(msgs []Message) bool {
	for _, m := range msgs {
		if strings.IndexByte(m.Role, 0) >= 0 || strings.IndexByte(m.Content, 0) >= 0 {
			return true
		}
	}
	return false
}
