package chat

import (
	"strings"
	"sync"
	"time"
)

// DefaultRepaintInterval is how often a streaming answer repaints at most: fast enough
// to read as live (median delay ~half of it), slow enough that a 2,000 tokens/s stream
// costs ~25 repaints a second instead of 2,000.
const DefaultRepaintInterval = 40 * time.Millisecond

// Throttle coalesces streamed text so the view repaints at most once per interval. Add
// is called from the stream goroutine; flush runs on the Throttle's timer goroutine (or
// in Add, for the first piece after a quiet spell) with all text added since the last
// flush, and the caller hops onto the UI thread from there.
type Throttle struct {
	interval time.Duration
	flush    func(pending string)

	flushMu sync.Mutex // held while flush runs; taken before mu

	mu        sync.Mutex
	pending   strings.Builder
	lastFlush time.Time
	timer     *time.Timer // non-nil while a flush is scheduled
	closed    bool
}

// NewThrottle returns a Throttle that calls flush at most once per interval.
func NewThrottle(interval time.Duration, flush func(pending string)) *Throttle {
	return &Throttle{interval: interval, flush: flush}
}

// Add queues text for the next flush.
func (t *Throttle) Add(text string) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.pending.WriteString(text)
	if t.timer != nil {
		t.mu.Unlock()
		return
	}
	wait := t.interval - time.Since(t.lastFlush)
	if wait > 0 {
		t.timer = time.AfterFunc(wait, t.fire)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	// Quiet for a whole interval: paint at once so a slow stream has no lag.
	t.flushNow()
}

func (t *Throttle) fire() {
	t.mu.Lock()
	t.timer = nil
	t.mu.Unlock()
	t.flushNow()
}

// flushNow hands everything pending to flush. flushMu keeps flushes in order and one at
// a time, whichever goroutine runs them.
func (t *Throttle) flushNow() {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	t.mu.Lock()
	out := t.pending.String()
	t.pending.Reset()
	t.lastFlush = time.Now()
	t.mu.Unlock()
	if out != "" {
		t.flush(out)
	}
}

// Close stops the timer and flushes what is left, from the calling goroutine, after any
// flush in progress. Adds after Close are dropped.
func (t *Throttle) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.mu.Unlock()
	t.flushNow()
}
