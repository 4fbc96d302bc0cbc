package worker

import (
	"sync/atomic"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// lastUse is when a completion, chat or embedding request last started or ended, in
// Unix nanoseconds; health checks, capabilities and heartbeats do not count as use.
type lastUse struct{ at atomic.Int64 }

func (l *lastUse) touch() { l.at.Store(time.Now().UnixNano()) }

func (l *lastUse) since() time.Duration { return time.Since(time.Unix(0, l.at.Load())) }

// health is a loaded worker's GET /health: with its load and how long it has been
// unused, which its hive reads to pick the least recently used idle worker to evict.
func (w *Worker) health() wire.Health {
	h := wire.Health{Status: wire.HealthOK}
	if e := w.engine.Load(); e != nil {
		st := e.Stats()
		h.Active, h.Queued = st.Active, st.Queued
	}
	if w.used.at.Load() != 0 {
		h.IdleMS = w.used.since().Milliseconds()
	}
	return h
}

// idleAfter returns a channel closed once the worker has served nothing for ttl (never
// for ttl 0). Its goroutine ends with the worker (w.stopping).
func (w *Worker) idleAfter(ttl time.Duration) <-chan struct{} {
	idle := make(chan struct{})
	w.used.touch() // loaded counts as used: the TTL (and /health's idle_ms) runs from here
	if ttl <= 0 {
		return idle
	}
	go func() {
		tick := time.NewTicker(min(max(ttl/4, 10*time.Millisecond), time.Second))
		defer tick.Stop()
		for {
			select {
			case <-w.stopping.Done():
				return
			case <-tick.C:
			}
			e := w.engine.Load()
			if e == nil {
				continue
			}
			if st := e.Stats(); st.Active == 0 && st.Queued == 0 && w.used.since() >= ttl {
				close(idle)
				return
			}
		}
	}()
	return idle
}
