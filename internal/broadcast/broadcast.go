// Package broadcast owns one-to-many delivery of values inside a process: a Hub hands
// every published value to each subscriber's channel and never waits for a slow one.
package broadcast

import "sync"

// Policy is what a subscriber's channel does when its reader falls behind.
type Policy int

const (
	// DropNewest buffers up to the subscription's size; a value that finds the buffer
	// full is dropped for that subscriber (it should re-read the full picture, e.g. List).
	// Delivered values keep publish order.
	DropNewest Policy = iota
	// KeepLatest holds at most one value: a newer one replaces an unread one. For
	// snapshots (stats) and wake-ups (struct{}), where only the latest matters.
	KeepLatest
	// CloseWhenFull buffers up to the subscription's size; a subscriber that falls
	// further behind is dropped and its channel closed, so it knows it missed values
	// (an event stream's client reconnects and reads a fresh snapshot).
	CloseWhenFull
)

// Hub fans values out to subscribers. The zero Hub is ready to use; safe for
// concurrent use. Publish never blocks on a subscriber.
type Hub[T any] struct {
	mu     sync.Mutex // held while publishing, so every subscriber sees one order
	subs   map[chan T]Policy
	closed bool
}

// Subscribe returns a channel of values published from now on and a func that ends the
// subscription and closes the channel (safe to call more than once, and after Close).
// size is the buffer of a DropNewest or CloseWhenFull subscription (at least 1);
// KeepLatest ignores it.
func (h *Hub[T]) Subscribe(policy Policy, size int) (<-chan T, func()) {
	if policy == KeepLatest || size < 1 {
		size = 1
	}
	ch := make(chan T, size)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	if h.subs == nil {
		h.subs = map[chan T]Policy{}
	}
	h.subs[ch] = policy
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok { // Close may have closed it already
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// Publish hands v to every subscriber without blocking: a full DropNewest channel
// misses v, a KeepLatest channel's unread value is replaced by v, a full CloseWhenFull
// subscriber is dropped. No-op after Close.
func (h *Hub[T]) Publish(v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, policy := range h.subs {
		if policy == KeepLatest {
			select { // only Publish sends, under mu: after this drain the send succeeds
			case <-ch:
			default:
			}
		}
		select {
		case ch <- v:
		default:
			if policy == CloseWhenFull {
				delete(h.subs, ch)
				close(ch)
			}
		}
	}
}

// Len is the number of subscribers.
func (h *Hub[T]) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close closes every subscriber's channel; later subscriptions get a closed channel.
func (h *Hub[T]) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}
