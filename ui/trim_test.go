package ui

import (
	"sync/atomic"
	"testing"
	"time"
)

// trimSoon hands memory back once, after the last of a burst of first shows, with a do
// that queues f and returns at once, as fyne.Do does (it trimmed never when it read
// its decision back from the hop).
func TestTrimSoonTrimsOnceAfterABurstWithAnAsyncDo(t *testing.T) {
	su := newScreenUI(t)
	queue := make(chan func(), 16)
	done := make(chan struct{})
	go func() { // the "UI thread"
		defer close(done)
		for f := range queue {
			f()
		}
	}()
	su.do = func(f func()) { queue <- f }
	var trims atomic.Int32
	su.trim = func() { trims.Add(1) }

	ran := make(chan struct{})
	su.do(func() {
		su.trimSoon() // a screen's first show
		su.trimSoon() // and the next one right after
		close(ran)
	})
	<-ran
	deadline := time.Now().Add(10 * time.Second)
	for trims.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a second, wrong trim
	su.cancel()
	su.wg.Wait()
	close(queue)
	<-done
	if n := trims.Load(); n != 1 {
		t.Fatalf("trims after two first shows = %d, want 1", n)
	}
}
