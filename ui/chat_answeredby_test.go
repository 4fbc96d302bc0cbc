package ui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestAnsweredBySurvivesRestart: a Queen-routed answer names its worker, and a chat
// reopened by the next start of the app (a new screen on the same store) still does.
func TestAnsweredBySurvivesRestart(t *testing.T) {
	// A Queen's gateway as the chat sees it: a model list and a streamed answer that
	// names its worker.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathModels {
			fmt.Fprint(w, `{"object":"list","data":[{"id":"stories260K","object":"model"}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set(queen.HeaderWorker, "llm-127.0.0.1-18080")
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{"content":"Lily went to the park."}}]}`+"\n\n")
		fmt.Fprint(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	defer srv.Close()
	target := chat.Target{Kind: chat.TargetQueen, BaseURL: srv.URL, Model: "stories260K"}
	store, err := chat.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	su := newScreenUI(t)
	v := newTestChatView(t, su, store, target)
	su.onUI(func() {
		v.conv.Target = target
		v.renderTargets()
	})
	su.waitUntil(t, "the Queen as the target", 5*time.Second, func() bool { return v.currentIndex() >= 0 })
	su.onUI(func() {
		test.Type(v.input, "Once upon a time")
		test.Tap(v.send)
	})
	su.waitUntil(t, "the answer", 10*time.Second, func() bool { return len(v.views) == 2 && v.cancel == nil })
	var id string
	su.onUI(func() {
		id = v.conv.ID
		if line := lastView(v).metrics.Text; !strings.Contains(line, "answered by llm-127.0.0.1-18080") {
			t.Errorf("the answer's line %q does not name its worker", line)
		}
	})

	// The next start: a new screen on the same store opens the chat.
	su2 := newScreenUI(t)
	v2 := newTestChatView(t, su2, store, target)
	su2.onUI(func() {
		v2.open(id)
		if len(v2.views) != 2 {
			t.Fatalf("the reopened chat shows %d messages", len(v2.views))
		}
		if line := v2.views[1].metrics.Text; !v2.views[1].metrics.Visible() || !strings.Contains(line, "answered by llm-127.0.0.1-18080") {
			t.Errorf("the reopened answer's line %q does not name its worker", line)
		}
		if line := v2.views[0].metrics.Text; strings.Contains(line, "answered by") {
			t.Errorf("the user's message names a worker: %q", line)
		}
	})
}
