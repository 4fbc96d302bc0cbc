package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// QueenView is a live copy of a Queen's worker list, kept from its GET /v1/events stream
// (the same for the embedded and a remote Queen, including other machines' workers). It
// reconnects with capped backoff until closed.
type QueenView struct {
	url, token string
	log        *slog.Logger
	client     *http.Client
	notify     func()

	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	workers   map[string]wire.Worker
	connected bool
	lastErr   string
}

// maxEventLine bounds one SSE line: a worker record is well under this.
const maxEventLine = 256 << 10

// watchQueen starts following the Queen at url; notify is called (from the watcher's
// goroutine) after every change. Close stops it.
func watchQueen(url, token string, log *slog.Logger, notify func()) *QueenView {
	ctx, cancel := context.WithCancel(context.Background())
	v := &QueenView{
		url: strings.TrimRight(url, "/"), token: token, log: log, notify: notify,
		// No overall timeout: the stream is long-lived; dial and headers are bounded.
		client: &http.Client{Transport: &http.Transport{
			ResponseHeaderTimeout: 5 * time.Second,
			IdleConnTimeout:       30 * time.Second,
		}},
		cancel: cancel, done: make(chan struct{}), workers: map[string]wire.Worker{},
	}
	go v.run(ctx)
	return v
}

// Close stops the watcher and waits for its goroutine.
func (v *QueenView) Close() {
	v.cancel()
	<-v.done
	v.client.CloseIdleConnections()
}

// Workers returns the Queen's workers sorted by id.
func (v *QueenView) Workers() []wire.Worker {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]wire.Worker, 0, len(v.workers))
	for _, w := range v.workers {
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b wire.Worker) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	return out
}

// Connected reports whether the event stream is open, and the last error if not.
func (v *QueenView) Connected() (bool, string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.connected, v.lastErr
}

func (v *QueenView) run(ctx context.Context) {
	defer close(v.done)
	backoff := 200 * time.Millisecond
	for {
		opened, err := v.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		v.mu.Lock()
		v.connected = false
		v.lastErr = err.Error()
		v.mu.Unlock()
		v.notify()
		if opened {
			backoff = 200 * time.Millisecond
		}
		v.log.Debug("queen event stream ended", "url", v.url, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// stream reads one connection of the event stream until it ends; opened says whether it
// got as far as a 200.
func (v *QueenView) stream(ctx context.Context) (opened bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url+wire.PathEvents, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if v.token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+v.token)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("queen unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, wire.DecodeError(resp.StatusCode, body)
	}
	v.mu.Lock()
	v.connected, v.lastErr = true, ""
	clear(v.workers) // the stream opens with a snapshot of every worker
	v.mu.Unlock()
	v.notify()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue // event:, id:, comments and blank separators
		}
		var ev wire.Event
		if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &ev); err != nil {
			v.log.Warn("queen sent an event that is not JSON", "err", err)
			continue
		}
		v.apply(ev)
		v.notify()
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("queen event stream: %w", err)
	}
	return true, errors.New("queen closed the event stream")
}

func (v *QueenView) apply(ev wire.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ev.Type == wire.EventRemoved {
		delete(v.workers, ev.Worker.WorkerID)
		return
	}
	if ev.Worker.WorkerID != "" {
		v.workers[ev.Worker.WorkerID] = ev.Worker
	}
}
