package worker_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// chatMLTemplate is enough of a ChatML template for llama.cpp to detect it ("<|im_start|>")
// and apply its built-in ChatML formatting.
const chatMLTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// jinjaOnlyTemplate names none of the formats llama.cpp knows: only a Jinja engine can
// apply it.
const jinjaOnlyTemplate = "{% for message in messages %}{{ message['role'] | upper }}> {{ message['content'] }}\n{% endfor %}"

// brokenTemplate is no template at all: neither Jinja nor llama.cpp can apply it.
const brokenTemplate = "{% for message in %}{{ oops"

var templateChat = []wire.ChatMessage{
	{Role: "system", Content: "You tell stories."},
	{Role: "user", Content: "Tell me a story about a cat."},
}

// The prompts templateChat must become: ChatML, and the documented fallback transcript.
const (
	templateChatML    = "<|im_start|>system\nYou tell stories.<|im_end|>\n<|im_start|>user\nTell me a story about a cat.<|im_end|>\n<|im_start|>assistant\n"
	templateFallback  = "You tell stories.\n\nUser: Tell me a story about a cat.\nAssistant:"
	templateJinjaOnly = "SYSTEM> You tell stories.\nUSER> Tell me a story about a cat.\n"
)

// TestChatTemplate proves which prompt a chat becomes: the model's own template rendered
// with Jinja (any template the engine parses, not only the formats llama.cpp knows),
// else the fallback transcript. A chat is compared with a
// text completion of the expected rendering: same prompt token count, same greedy text.
func TestChatTemplate(t *testing.T) {
	t.Run("no template: fallback transcript", func(t *testing.T) {
		w := testenv.StartWorker(t)
		w.WaitOutput("chat_template=fallback ", 5*time.Second)
		n := chatMatchesCompletion(t, w.URL, templateFallback, []string{"\nUser:"})
		if m := promptTokens(t, w.URL, templateChatML); m == n {
			t.Fatalf("ChatML and fallback renderings both %d tokens: the comparison proves nothing", n)
		}
	})

	t.Run("ChatML template: the model's own", func(t *testing.T) {
		w := startWorkerOn(t, modelWithChatTemplate(t, chatMLTemplate))
		w.WaitOutput("chat_template=jinja ", 5*time.Second)
		n := chatMatchesCompletion(t, w.URL, templateChatML, nil)
		if m := promptTokens(t, w.URL, templateFallback); m == n {
			t.Fatalf("ChatML and fallback renderings both %d tokens: the comparison proves nothing", n)
		}
		// The rewritten file holds the same weights: greedy text as the original model's.
		orig := testenv.StartWorker(t)
		if a, b := greedyText(t, w.URL, storyPrompt), greedyText(t, orig.URL, storyPrompt); a != b {
			t.Fatalf("the copy with a template generates %q, the original %q", a, b)
		}
	})

	t.Run("Jinja-only template: rendered by the Jinja engine", func(t *testing.T) {
		w := startWorkerOn(t, modelWithChatTemplate(t, jinjaOnlyTemplate))
		w.WaitOutput("chat_template=jinja ", 5*time.Second)
		chatMatchesCompletion(t, w.URL, templateJinjaOnly, nil)
	})

	t.Run("broken template: fallback, and the log says so", func(t *testing.T) {
		w := startWorkerOn(t, modelWithChatTemplate(t, brokenTemplate))
		w.WaitOutput(`chat_template="fallback (the model's template could not be applied)"`, 5*time.Second)
		chatMatchesCompletion(t, w.URL, templateFallback, []string{"\nUser:"})
	})
}

// startWorkerOn is testenv.StartWorker for another model file.
func startWorkerOn(t *testing.T, model string) *testenv.Process {
	t.Helper()
	port := testenv.FreePort(t)
	w := testenv.StartProcess(t, "worker", "--model", model, "--port", strconv.Itoa(port), "--threads", "1")
	w.Port, w.URL = port, "http://127.0.0.1:"+strconv.Itoa(port)
	w.WaitHealthy(30 * time.Second)
	return w
}

// chatMatchesCompletion checks that a greedy chat of templateChat has the prompt token
// count and the text of a greedy completion of rendering (with stops), and returns the
// count.
func chatMatchesCompletion(t *testing.T, url, rendering string, stops []string) int {
	t.Helper()
	status, body := post(t, url+wire.PathChat, map[string]any{
		"messages": templateChat, "max_tokens": 24, "temperature": 0,
	})
	if status != 200 {
		t.Fatalf("chat: status %d: %s", status, body)
	}
	chat := decode[wire.ChatCompletion](t, body)
	req := map[string]any{"prompt": rendering, "max_tokens": 24, "temperature": 0}
	if stops != nil {
		req["stop"] = stops
	}
	status, body = post(t, url+wire.PathCompletions, req)
	if status != 200 {
		t.Fatalf("completion: status %d: %s", status, body)
	}
	compl := decode[wire.Completion](t, body)
	if chat.Usage == nil || compl.Usage == nil || chat.Usage.PromptTokens != compl.Usage.PromptTokens {
		t.Fatalf("chat usage %+v, completion of %q usage %+v: the chat did not get that prompt", chat.Usage, rendering, compl.Usage)
	}
	if got, want := chat.Choices[0].Message.Content, compl.Choices[0].Text; got != want || strings.TrimSpace(got) == "" {
		t.Fatalf("chat wrote %q, the completion of %q wrote %q", got, rendering, want)
	}
	return chat.Usage.PromptTokens
}

// promptTokens is the prompt token count of a one-token completion of prompt.
func promptTokens(t *testing.T, url, prompt string) int {
	t.Helper()
	status, body := post(t, url+wire.PathCompletions, map[string]any{"prompt": prompt, "max_tokens": 1})
	if status != 200 {
		t.Fatalf("completion: status %d: %s", status, body)
	}
	return decode[wire.Completion](t, body).Usage.PromptTokens
}

func greedyText(t *testing.T, url, prompt string) string {
	t.Helper()
	status, body := post(t, url+wire.PathCompletions, map[string]any{"prompt": prompt, "max_tokens": 40, "temperature": 0})
	if status != 200 {
		t.Fatalf("completion: status %d: %s", status, body)
	}
	return decode[wire.Completion](t, body).Choices[0].Text
}
