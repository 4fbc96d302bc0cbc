package engine

import (
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// Message is one chat message.
type Message struct {
	Role    string
	Content string
}

// FallbackStop ends an assistant turn of the fallback transcript: the model starting the
// user's next line.
const FallbackStop = "\nUser:"

// ChatPrompt turns messages into a prompt. A model with its own chat template gets it
// (parseSpecial is then true: the template names special tokens). A model without one, or
// with a template llama.cpp cannot apply, gets the fallback transcript:
//
//	<system messages, each followed by a blank line>
//	User: <text>
//	Assistant: <text>
//	...
//	Assistant:
//
// whose extra stop string is FallbackStop, so the model does not play the user's part.
func (e *Engine) ChatPrompt(msgs []Message) (prompt string, parseSpecial bool, stops []string) {
	if e.template != "" && !hasNUL(msgs) { // a NUL would abort llama.cpp: Prepare refuses it
		if p, ok := applyTemplate(e.template, msgs); ok {
			return p, true, nil
		}
	}
	return FallbackPrompt(msgs), false, []string{FallbackStop}
}

// FallbackPrompt is the documented transcript for models without a chat template.
func FallbackPrompt(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		text := strings.TrimSpace(m.Content)
		switch m.Role {
		case "system", "developer":
			b.WriteString(text)
			b.WriteString("\n\n")
		case "assistant":
			b.WriteString("Assistant: ")
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
