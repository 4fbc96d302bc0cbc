package hive

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/shirou/gopsutil/v4/mem"

	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The hive's budget (issue 12, "place and evict by memory"): a spawn order starts a
// worker only when the model's estimated memory fits — within MaxMemory for all
// workers together, within MaxWorkers, and leaving reserveFraction of the machine's RAM
// free. When it does not fit, the least recently used idle workers this hive started
// for orders are stopped until it does (as llama-swap's groups and Ollama's
// MAX_LOADED_MODELS do); a worker with a request in flight is never stopped. When
// only busy workers are left, the order waits for one of them to go idle, up to
// Options.RoomWait, then fails with wire.CodeNoRoom (the Queen answers 503 with Retry-After).

const (
	reserveFraction = 10 // percent of RAM always left free
	defaultRoomWait = 30 * time.Second
	roomPoll        = 200 * time.Millisecond
)

// room is what the budget leaves for one more worker.
type room struct {
	ok      bool
	why     string // when not ok: what is short, for the order's error
	budget  uint64 // memory a new worker may still take (the report's budget_ram_bytes)
	workers int    // live workers now
}

// estimate is the host memory a model takes in a worker, as the Models screen shows
// it (CPU only: the upper bound for host memory); 0 when it cannot be estimated.
func (h *Hive) estimate(path string) uint64 {
	est, err := h.estimates.Estimate(path, models.EstimateOptions{})
	if err != nil {
		return 0
	}
	return est.CPUOnlyRAM
}

// roomFor reports whether a worker needing need bytes fits the budget now.
func (h *Hive) roomFor(need uint64) room {
	var r room
	var used, loading uint64
	for _, e := range h.reg.List() {
		if !e.State.Live() {
			continue
		}
		r.workers++
		est := h.estimate(e.ModelPath)
		used += est
		if e.State == StateStarting {
			loading += est // not resident yet: free memory does not show it
		}
	}
	r.budget = ^uint64(0)
	if vm, err := mem.VirtualMemory(); err == nil {
		reserve := vm.Total * reserveFraction / 100
		r.budget = subFloor(vm.Available, reserve+loading)
	}
	if h.opts.MaxMemory > 0 {
		r.budget = min(r.budget, subFloor(h.opts.MaxMemory, used))
	}
	switch {
	case h.opts.MaxWorkers > 0 && r.workers >= h.opts.MaxWorkers:
		r.why = fmt.Sprintf("%d of %d workers run", r.workers, h.opts.MaxWorkers)
	case need > r.budget:
		r.why = fmt.Sprintf("the model needs about %s, the budget has %s left", mib(need), mib(r.budget))
	default:
		r.ok = true
	}
	return r
}

func subFloor(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }

// evictable is a worker this hive could stop to make room.
type evictable struct {
	e    Entry
	idle time.Duration
	busy bool
}

// evictionCandidates lists the ready workers this hive started for spawn orders, with
// their load as their /health says; workers started by hand are never evicted.
func (h *Hive) evictionCandidates(ctx context.Context) []evictable {
	var out []evictable
	for _, e := range h.reg.List() {
		if e.State != StateReady || e.SpawnOrder == "" || !spawner.Alive(e.PID, e.ProcessStart) {
			continue
		}
		hl, err := h.workerHealth(ctx, e)
		if err != nil {
			continue // not answering: not known idle, so not stopped
		}
		out = append(out, evictable{e: e, idle: time.Duration(hl.IdleMS) * time.Millisecond, busy: hl.Active+hl.Queued > 0})
	}
	// Least recently used first.
	slices.SortFunc(out, func(a, b evictable) int { return cmp.Compare(b.idle, a.idle) })
	return out
}

func (h *Hive) workerHealth(ctx context.Context, e Entry) (wire.Health, error) {
	var hl wire.Health
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL()+wire.PathHealth, nil)
	if err != nil {
		return hl, err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return hl, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return hl, fmt.Errorf("health: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&hl)
	return hl, err
}

// errNoRoom is an order refused for want of room; its text goes to the Queen.
type errNoRoom struct{ why string }

func (e *errNoRoom) Error() string {
	return "no room for another worker: " + e.why + ", and every worker that could be stopped is busy (raise the hive's --max-memory or --max-workers, or retry shortly)"
}

// makeRoom stops least recently used idle order workers until a worker needing need
// bytes fits, waiting up to Options.RoomWait for busy ones to go idle. It returns
// *errNoRoom when the wait ends without room.
func (h *Hive) makeRoom(ctx context.Context, model string, need uint64) error {
	wait := h.opts.RoomWait
	if wait <= 0 {
		wait = defaultRoomWait
	}
	deadline := time.Now().Add(wait)
	for {
		r := h.roomFor(need)
		if r.ok {
			return nil
		}
		stopped := false
		for _, c := range h.evictionCandidates(ctx) {
			if c.busy {
				continue
			}
			h.log.Info("evicting the least recently used idle worker to make room",
				"worker", c.e.ID, "model", c.e.Model, "idle", c.idle.Round(time.Millisecond), "for", model, "short", r.why)
			if err := h.Stop(ctx, c.e.ID); err != nil {
				h.log.Warn("evict", "worker", c.e.ID, "err", err)
				continue
			}
			stopped = true
			break // one at a time: the room is looked at again
		}
		if stopped {
			continue
		}
		if time.Now().After(deadline) {
			return &errNoRoom{why: r.why}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(roomPoll):
		}
	}
}
