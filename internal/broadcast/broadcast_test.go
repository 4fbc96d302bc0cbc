package broadcast

import (
	"sync"
	"testing"
	"time"
)

func drain[T any](ch <-chan T) []T {
	var out []T
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, v)
		default:
			return out
		}
	}
}

func TestDropNewestKeepsOrderAndDropsBeyondTheBuffer(t *testing.T) {
	var h Hub[int]
	ch, unsub := h.Subscribe(DropNewest, 3)
	defer unsub()
	for i := 1; i <= 5; i++ {
		h.Publish(i) // never blocks, though nobody reads
	}
	if got := drain(ch); len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Fatalf("got %v, want the first 3 in order", got)
	}
}

func TestKeepLatestReplacesAnUnreadValue(t *testing.T) {
	var h Hub[string]
	ch, unsub := h.Subscribe(KeepLatest, 0)
	defer unsub()
	h.Publish("old")
	h.Publish("new")
	if got := drain(ch); len(got) != 1 || got[0] != "new" {
		t.Fatalf("got %v, want [new]", got)
	}
}

func TestCloseWhenFullDropsTheSubscriberThatFellBehind(t *testing.T) {
	var h Hub[int]
	slow, unsubSlow := h.Subscribe(CloseWhenFull, 2)
	defer unsubSlow()
	fast, unsubFast := h.Subscribe(CloseWhenFull, 10)
	defer unsubFast()
	for i := 1; i <= 3; i++ {
		h.Publish(i)
	}
	got := drain(slow) // drain stops at the close
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("slow subscriber got %v, want [1 2] then a closed channel", got)
	}
	if _, ok := <-slow; ok {
		t.Fatal("a subscriber that fell a full buffer behind is still open")
	}
	unsubSlow() // after the drop: no double close
	if got := drain(fast); len(got) != 3 {
		t.Fatalf("fast subscriber got %v", got)
	}
	if n := h.Len(); n != 1 {
		t.Fatalf("%d subscribers, want the fast one only", n)
	}
}

func TestUnsubscribeAndCloseCloseTheChannelOnce(t *testing.T) {
	var h Hub[int]
	a, unsubA := h.Subscribe(DropNewest, 1)
	b, unsubB := h.Subscribe(KeepLatest, 1)
	unsubA()
	unsubA() // twice is fine
	if _, ok := <-a; ok {
		t.Fatal("unsubscribed channel is open")
	}
	h.Close()
	if _, ok := <-b; ok {
		t.Fatal("Close left a channel open")
	}
	unsubB() // after Close: no double close
	c, unsubC := h.Subscribe(DropNewest, 1)
	defer unsubC()
	if _, ok := <-c; ok {
		t.Fatal("a subscription after Close is open")
	}
	h.Publish(1) // no-op, no panic
	if n := h.Len(); n != 0 {
		t.Fatalf("%d subscribers after Close", n)
	}
}

// A subscriber that never reads must not hold up Publish or the other subscribers.
func TestPublishNeverBlocksOnASlowSubscriber(t *testing.T) {
	var h Hub[int]
	_, unsubSlow := h.Subscribe(DropNewest, 1)
	defer unsubSlow()
	fast, unsubFast := h.Subscribe(DropNewest, 1000)
	defer unsubFast()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			h.Publish(i)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	if got := drain(fast); len(got) != 1000 {
		t.Fatalf("fast subscriber got %d values, want 1000", len(got))
	}
}

func TestConcurrentPublishSubscribe(t *testing.T) {
	var h Hub[int]
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				h.Publish(i)
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				ch, unsub := h.Subscribe(KeepLatest, 0)
				drain(ch)
				unsub()
			}
		}()
	}
	wg.Wait()
	h.Close()
}
