package app

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/beekeeper-hive/beekeeper/internal/broadcast"
)

// LogRing keeps the app's own recent log lines for the Logs screen. It is an io.Writer
// (one line per Write from slog's text handler) that never blocks the writer; readers
// learn of new lines through Subscribe, coalesced so a burst wakes them once.
type LogRing struct {
	mu    sync.Mutex
	lines []string
	next  int // ring index of the next write once full
	full  bool
	subs  broadcast.Hub[struct{}] // wake-ups, coalesced: a burst wakes a reader once
}

// NewLogRing keeps the last max lines.
func NewLogRing(max int) *LogRing {
	if max <= 0 {
		max = 1000
	}
	return &LogRing{lines: make([]string, 0, max)}
}

// Write stores p as one or more lines.
func (r *LogRing) Write(p []byte) (int, error) {
	text := strings.TrimRight(string(p), "\n")
	r.mu.Lock()
	for _, line := range strings.Split(text, "\n") {
		if cap(r.lines) == len(r.lines) {
			r.full = true
		}
		if !r.full {
			r.lines = append(r.lines, line)
			continue
		}
		r.lines[r.next] = line
		r.next = (r.next + 1) % len(r.lines)
	}
	r.mu.Unlock()
	r.subs.Publish(struct{}{})
	return len(p), nil
}

// Lines returns the kept lines, oldest first.
func (r *LogRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.lines))
	if r.full {
		out = append(out, r.lines[r.next:]...)
		out = append(out, r.lines[:r.next]...)
		return out
	}
	return append(out, r.lines...)
}

// String is the kept log as one text.
func (r *LogRing) String() string { return strings.Join(r.Lines(), "\n") }

// Subscribe returns a channel that receives a value after new lines arrive, and a func
// that ends the subscription.
func (r *LogRing) Subscribe() (<-chan struct{}, func()) {
	return r.subs.Subscribe(broadcast.KeepLatest, 1)
}

// NewLogger returns a logger that writes text lines both to w (stderr in the app; nil for
// none) and to ring.
func NewLogger(ring *LogRing, w io.Writer, level slog.Level) *slog.Logger {
	var out io.Writer = ring
	if w != nil {
		out = io.MultiWriter(ring, w)
	}
	return slog.New(slog.NewTextHandler(&lineWriter{w: out}, &slog.HandlerOptions{Level: level}))
}

// lineWriter serialises writes so each record reaches the ring as one Write.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(bytes.Clone(p))
	return len(p), err
}
