package worker_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestNULIsRefusedNotFatal: a NUL character used to reach llama_tokenize as a nil
// pointer and abort the worker. Every field whose text reaches llama.cpp is refused with
// a 400 naming it, and the worker keeps serving.
func TestNULIsRefusedNotFatal(t *testing.T) {
	w := testenv.StartWorker(t)
	cases := []struct {
		name, path, field string
		body              map[string]any
	}{
		{"chat content", wire.PathChat, "messages[0].content",
			map[string]any{"messages": []map[string]string{{"role": "user", "content": "Once\x00upon"}}, "max_tokens": 3}},
		{"chat role", wire.PathChat, "messages[1].role",
			map[string]any{"messages": []map[string]string{{"role": "user", "content": "hi"}, {"role": "us\x00er", "content": "x"}}, "max_tokens": 3}},
		{"completion prompt", wire.PathCompletions, "prompt",
			map[string]any{"prompt": "\x00", "max_tokens": 3}},
		{"stop string", wire.PathCompletions, "stop[0]",
			map[string]any{"prompt": storyPrompt, "stop": []string{"a\x00"}, "max_tokens": 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, w.URL+tc.path, tc.body)
			detail := wantError(t, status, body, http.StatusBadRequest, wire.CodeInvalidField)
			if !contains(detail.Message, tc.field) || !contains(detail.Message, "NUL") {
				t.Fatalf("the error does not name %s and the NUL: %q", tc.field, detail.Message)
			}
			// Still alive: the next request is served.
			if status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 2}); status != 200 {
				t.Fatalf("after the NUL request: %d %s", status, body)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
