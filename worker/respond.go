package worker

import (
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// format is the answer shape: a chat completion or a plain text completion.
type format int

const (
	chatFormat format = iota
	textFormat
)

// responder writes one answer. Streamed, it builds one SSE event per emitted piece by
// hand into a reused buffer (no reflection, no allocation per token) and hands it to the
// stream's writer goroutine, which sends it at once; whole, it collects the text and
// writes one JSON document at the end. close must be called before the handler returns.
type responder struct {
	rw      http.ResponseWriter
	sse     *sseWriter // streamed only
	f       format
	id      string
	model   string
	created int64
	stream  bool
	usage   bool

	buf    []byte // the event being built
	prefix []byte // the event's JSON up to the text value
	text   []byte // the whole answer (not streamed)
	calls  []wire.ToolCall
	began  bool
}

func newResponder(rw http.ResponseWriter, f format, model string, stream, usage bool) *responder {
	out := &responder{rw: rw, f: f, model: model, stream: stream, usage: usage, created: time.Now().Unix()}
	if f == chatFormat {
		out.id = newID("chatcmpl-")
	} else {
		out.id = newID("cmpl-")
	}
	if !stream {
		return out
	}
	out.prefix = out.appendHead(nil)
	if f == chatFormat {
		out.prefix = append(out.prefix, `"choices":[{"index":0,"delta":{"content":`...)
	} else {
		out.prefix = append(out.prefix, `"choices":[{"index":0,"text":`...)
	}
	out.buf = make([]byte, 0, 512)
	out.sse = newSSEWriter(rw)

	h := rw.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rw.WriteHeader(http.StatusOK)
	out.began = true
	if f == chatFormat { // OpenAI's first chunk names the role
		out.event(wire.ChatCompletionChunk{ID: out.id, Object: "chat.completion.chunk", Created: out.created, Model: model,
			Choices: []wire.ChatChunkChoice{{Delta: wire.ChatDelta{Role: "assistant"}}}})
	}
	return out
}

// newID is an answer's id: prefix and 24 random hex digits.
func newID(prefix string) string {
	var idb [12]byte
	for i := range idb {
		idb[i] = byte(rand.Uint32())
	}
	return prefix + hex.EncodeToString(idb[:])
}

// started reports whether the answer's status line is written (errors can no longer be
// answered as JSON errors).
func (o *responder) started() bool { return o.began }

func (o *responder) appendHead(b []byte) []byte {
	b = append(b, `data: {"id":"`...)
	b = append(b, o.id...)
	if o.f == chatFormat {
		b = append(b, `","object":"chat.completion.chunk","created":`...)
	} else {
		b = append(b, `","object":"text_completion","created":`...)
	}
	b = strconv.AppendInt(b, o.created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, o.model)
	return append(b, ',')
}

// emit takes one final piece of generated text.
func (o *responder) emit(text []byte) error {
	if !o.stream {
		o.text = append(o.text, text...)
		return nil
	}
	b := append(o.buf[:0], o.prefix...)
	b = appendJSONString(b, text)
	if o.f == chatFormat {
		b = append(b, `},"finish_reason":null}]}`+"\n\n"...)
	} else {
		b = append(b, `,"finish_reason":null}]}`+"\n\n"...)
	}
	o.buf = b
	return o.sse.send(b)
}

// event sends v as one SSE data line.
func (o *responder) event(v any) {
	b, _ := json.Marshal(v)
	b = append(append(o.buf[:0], "data: "...), b...)
	o.buf = append(b, "\n\n"...)
	_ = o.sse.send(o.buf) // a gone client shows as a cancelled request context
}

// close waits until the streamed events are sent (or the client is gone); after it the
// ResponseWriter is no longer touched.
func (o *responder) close() {
	if o.sse != nil {
		o.sse.close()
	}
}

// toolCalls takes the answer's tool calls (chat only). Streamed, each call goes out as
// OpenAI sends them: a delta naming the call with empty arguments, then the arguments in
// fragments, which clients (the SDKs' accumulators) join.
func (o *responder) toolCalls(calls []wire.ToolCall) {
	if !o.stream {
		o.calls = calls
		return
	}
	const fragment = 32
	for _, c := range calls {
		head := c
		head.Function.Arguments = ""
		o.event(wire.ChatCompletionChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.model,
			Choices: []wire.ChatChunkChoice{{Delta: wire.ChatDelta{ToolCalls: []wire.ToolCall{head}}}}})
		args := c.Function.Arguments
		for len(args) > 0 {
			n := min(fragment, len(args))
			o.event(wire.ChatCompletionChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.model,
				Choices: []wire.ChatChunkChoice{{Delta: wire.ChatDelta{ToolCalls: []wire.ToolCall{{Index: c.Index,
					Function: wire.ToolCallFunction{Arguments: args[:n]}}}}}}})
			args = args[n:]
		}
	}
}

// finish writes the end of the answer: the finish reason, usage, and [DONE] when streamed.
func (o *responder) finish(res engine.Result) {
	usage := &wire.Usage{PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens,
		TotalTokens:         res.PromptTokens + res.CompletionTokens,
		PromptTokensDetails: &wire.PromptTokensDetails{CachedTokens: res.CachedTokens}}
	reason := res.FinishReason
	if !o.stream {
		if o.f == chatFormat {
			wire.WriteJSON(o.rw, http.StatusOK, wire.ChatCompletion{ID: o.id, Object: "chat.completion", Created: o.created,
				Model: o.model, Usage: usage, Choices: []wire.ChatChoice{{
					Message: wire.ChatMessage{Role: "assistant", Content: string(o.text), ToolCalls: o.unindexedCalls()}, FinishReason: reason}}})
		} else {
			wire.WriteJSON(o.rw, http.StatusOK, wire.Completion{ID: o.id, Object: "text_completion", Created: o.created,
				Model: o.model, Usage: usage, Choices: []wire.CompletionChoice{{Text: string(o.text), FinishReason: &reason}}})
		}
		return
	}
	if o.f == chatFormat {
		o.event(wire.ChatCompletionChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.model,
			Choices: []wire.ChatChunkChoice{{FinishReason: &reason}}})
		if o.usage { // OpenAI's usage chunk: no choices
			o.event(wire.ChatCompletionChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.model,
				Choices: []wire.ChatChunkChoice{}, Usage: usage})
		}
	} else {
		o.event(wire.Completion{ID: o.id, Object: "text_completion", Created: o.created, Model: o.model,
			Choices: []wire.CompletionChoice{{FinishReason: &reason}}})
		if o.usage {
			o.event(wire.Completion{ID: o.id, Object: "text_completion", Created: o.created, Model: o.model,
				Choices: []wire.CompletionChoice{}, Usage: usage})
		}
	}
	o.buf = append(o.buf[:0], "data: "+wire.SSEDone+"\n\n"...)
	_ = o.sse.send(o.buf)
	o.sse.close()
}

// unindexedCalls are the calls as a whole message lists them: no index (deltas only).
func (o *responder) unindexedCalls() []wire.ToolCall {
	out := make([]wire.ToolCall, len(o.calls))
	for i, c := range o.calls {
		c.Index = nil
		out[i] = c
	}
	return out
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
