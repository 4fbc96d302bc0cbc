package ui

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/queen"
)

// streamRenderer coalesces a stream's pieces and repaints the accumulated text on the UI
// thread at most once per interval. Add and Close run on the stream goroutine.
type streamRenderer struct {
	th   *chat.Throttle
	text strings.Builder // owned by the throttle's flush, which runs one at a time
}

func newStreamRenderer(interval time.Duration, do func(func()), paint func(text string)) *streamRenderer {
	r := &streamRenderer{}
	r.th = chat.NewThrottle(interval, func(pending string) {
		r.text.WriteString(pending)
		snapshot := r.text.String()
		do(func() { paint(snapshot) })
	})
	return r
}

func (r *streamRenderer) Add(piece string) { r.th.Add(piece) }
func (r *streamRenderer) Close()           { r.th.Close() }

// answeredBy records which worker the Queen's gateway routed an answer to: the gateway
// names it in a response header (queen.HeaderWorker), which the chat client does not
// pass on, so the Chat screen's HTTP transport reads it for the request whose context
// carries one of these.
type answeredBy struct {
	mu     sync.Mutex
	worker string
}

type answeredByKey struct{}

// withAnsweredBy returns ctx carrying a fresh record.
func withAnsweredBy(ctx context.Context) (context.Context, *answeredBy) {
	a := &answeredBy{}
	return context.WithValue(ctx, answeredByKey{}, a), a
}

func (a *answeredBy) get() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.worker
}

// headerTransport fills the request's answeredBy from the response's headers.
type headerTransport struct{ next http.RoundTripper }

func (t headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if a, ok := req.Context().Value(answeredByKey{}).(*answeredBy); ok && err == nil {
		a.mu.Lock()
		a.worker = resp.Header.Get(queen.HeaderWorker)
		a.mu.Unlock()
	}
	return resp, err
}

// newChatClient is the Chat screen's client: no overall timeout (a stream lasts as long
// as the answer), and the Queen's choice of worker recorded.
func newChatClient() *chat.Client {
	return chat.NewClient(&http.Client{Transport: headerTransport{next: http.DefaultTransport}})
}
