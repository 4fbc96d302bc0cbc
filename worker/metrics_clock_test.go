package worker

import (
	"net/http"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// TestTokenClockAllocatesNothing guards the scheduler's goroutine: timing a token and
// counting an answer on an existing series allocate nothing.
func TestTokenClockAllocatesNothing(t *testing.T) {
	m := newWorkerMetrics(func() *engine.Engine { return nil })
	c := m.clock(time.Now())
	m.request(wire.PathChat, http.StatusOK)
	if n := testing.AllocsPerRun(1000, c.tick); n != 0 {
		t.Errorf("tick: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.request(wire.PathChat, http.StatusOK) }); n != 0 {
		t.Errorf("request: %v allocations, want 0", n)
	}
}

// BenchmarkTokenClockTick is the cost each generated token pays for /metrics, on the
// scheduler's goroutine (a token takes 0.25 ms on the test model).
func BenchmarkTokenClockTick(b *testing.B) {
	m := newWorkerMetrics(func() *engine.Engine { return nil })
	c := m.clock(time.Now())
	b.ReportAllocs()
	for b.Loop() {
		c.tick()
	}
}
