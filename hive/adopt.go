package hive

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// runningEntries are the entries of the workers of this state folder that run now, from
// the processes themselves (their environment marker and command line). The registry
// starts from them when it sets a corrupt file aside; they begin as "starting" and
// adoption brings those that serve to "ready".
func (h *Hive) runningEntries() []Entry {
	found, err := spawner.FindWorkers(h.opts.StateDir)
	if err != nil {
		h.log.Warn("find running workers to rebuild the registry", "err", err)
		return nil
	}
	out := make([]Entry, 0, len(found))
	for _, f := range found {
		out = append(out, h.foundEntry(f))
	}
	return out
}

// foundEntry is the entry of a running worker that no entry records.
func (h *Hive) foundEntry(f spawner.Found) Entry {
	s := f.Spec
	e := Entry{
		ID: f.ID, PID: f.PID, ProcessStart: f.CreateTime, Port: s.Port,
		BindHost: s.BindHost, AdvertiseHost: s.AdvertiseHost,
		Model: wire.ModelName(s.ModelPath), ModelPath: s.ModelPath,
		WorkerType: s.WorkerType, SpawnedBy: s.SpawnedBy,
		CtxSize: s.CtxSize, Threads: s.Threads,
		StartedAt: time.UnixMilli(f.CreateTime).UTC(), LogFile: h.sp.LogFile(f.ID),
		State: StateStarting, Sync: SyncOff, SpawnOrder: s.SpawnOrder,
	}
	if s.QueenURL != "" {
		// The Queen it heartbeats to: the sync brings it in line with ours.
		e.Sync, e.QueenURL = SyncPending, s.QueenURL
	}
	return e
}

// adoptUnrecorded records the running workers of this state folder that no entry
// records: their spawn was killed between starting them and recording them, or the
// registry lost them. It also drops claims whose spawn died before starting anything.
// A worker whose spawn still runs, or whose id another live worker holds, is left alone;
// one that runs while its own entry says it ended (exited is final) is stopped.
func (h *Hive) adoptUnrecorded() {
	found, err := spawner.FindWorkers(h.opts.StateDir)
	if err != nil {
		h.warnOnce("find", "look for unrecorded workers", "err", err)
		return
	}
	h.clearWarn("find")
	if !h.unsettled(found) {
		return // every worker recorded, no claim: no transaction (the app asks every 5 s)
	}
	var adopted []string
	var strays []spawner.Found
	var replaced []Entry
	err = h.reg.Update(func(m map[string]Entry) error {
		adopted, strays, replaced = adopted[:0], strays[:0], replaced[:0]
		running := map[string]bool{}
		for _, f := range found {
			running[f.ID] = true
			cur, ok := m[f.ID]
			e := h.foundEntry(f)
			switch {
			case ok && cur.SameProcess(e) && !cur.State.Live():
				strays = append(strays, f)
				continue
			case ok && (cur.SameProcess(e) || holdsPort(cur)):
				continue // recorded; or its spawn is recording it; or another live worker has the id
			}
			if ok && cur.Claimed() {
				e = cur // the claim its spawn made before starting it
				e.PID, e.ProcessStart = f.PID, f.CreateTime
			} else if ok && cur.State.Live() && cur.PID > 0 {
				replaced = append(replaced, cur) // its process is gone, its exit not recorded
			}
			m[f.ID] = e
			adopted = append(adopted, fmt.Sprintf("%s (pid %d)", f.ID, f.PID))
		}
		for id, e := range m {
			if e.Claimed() && !running[id] && !claimantAlive(e) {
				delete(m, id) // its spawn died before the worker started
			}
		}
		return nil
	})
	if err != nil {
		h.warnOnce("adopt", "record running workers that no entry records; retried", "err", err)
		return
	}
	h.clearWarn("adopt")
	for _, e := range replaced {
		h.syncer.Gone(e) // withdrawn with its own key before the adopted one is registered
	}
	if len(adopted) > 0 {
		h.log.Warn("adopted running workers that no entry recorded (a spawn was interrupted, or the registry lost them)", "workers", adopted)
	}
	for _, f := range strays {
		h.log.Warn("stopping a worker that runs although its entry says it ended", "id", f.ID, "pid", f.PID)
		_ = spawner.StopPID(h.ctx, f.PID, f.CreateTime, 5*time.Second)
	}
}

// unsettled reports whether a found worker lacks a live entry of its own, or a claim
// waits, as far as the registry last read says: only then is a transaction needed.
func (h *Hive) unsettled(found []spawner.Found) bool {
	entries := h.reg.List()
	if slices.ContainsFunc(entries, Entry.Claimed) {
		return true
	}
	byID := make(map[string]Entry, len(entries))
	for _, e := range entries {
		byID[e.ID] = e
	}
	for _, f := range found {
		if e, ok := byID[f.ID]; !ok || !e.State.Live() || !e.SameProcess(h.foundEntry(f)) {
			return true
		}
	}
	return false
}

// adoptAll re-adopts each live entry whose process (same pid and start time) still runs
// and answers as the same worker; the others are marked exited. Nothing is dropped.
func (h *Hive) adoptAll() {
	for _, e := range h.reg.List() {
		if !e.State.Live() {
			continue
		}
		h.checkAdopted(e, true)
	}
}

// checkAdopted checks one live entry we are not the parent of. At open (full) it also
// asks the worker who it is; afterwards only the pid is watched. A claim is left to its
// spawn (or to adoptUnrecorded when that spawn died).
func (h *Hive) checkAdopted(e Entry, full bool) {
	if e.Claimed() {
		return
	}
	alive := spawner.Alive(e.PID, e.ProcessStart)
	if alive && e.State == StateStarting {
		h.promote(e)
		return
	}
	reason := "process is gone"
	if alive && full {
		ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
		defer cancel()
		_, token := h.syncer.Queen()
		caps, err := spawner.Capabilities(ctx, h.http, e.URL(), token)
		var apiErr *wire.APIError
		switch {
		case !spawner.Healthy(ctx, h.http, e.URL()):
			alive, reason = false, "process runs but does not answer /health"
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
			// Same pid and start time, serving on its port: ours, spawned with another
			// token (the app opens before it knows its Queen, or the token changed).
			// Never stop a healthy worker over that; its Queen traffic needs a restart.
			h.log.Warn("adopted a worker spawned with another API token; restart it to use the current one", "id", e.ID)
		case err != nil:
			alive, reason = false, "process runs but /capabilities failed: "+err.Error()
		case caps.WorkerID != e.ID:
			alive, reason = false, fmt.Sprintf("another worker (%s) answers on its port", caps.WorkerID)
		}
	}
	if alive {
		return
	}
	if reason != "process is gone" && spawner.Alive(e.PID, e.ProcessStart) {
		// Our worker, but unusable: stop it rather than orphan it.
		h.log.Warn("stopping unresponsive worker", "id", e.ID, "pid", e.PID, "reason", reason)
		_ = spawner.StopPID(h.ctx, e.PID, e.ProcessStart, 5*time.Second)
	}
	if err := h.markGone(e.ID, e.PID, nil, reason); err != nil {
		h.warnOnce("exit:"+e.ID, "record worker exit; retried while the worker is listed live", "id", e.ID, "err", err)
	}
}

// promote records a starting worker as ready once it serves as itself, when no spawn is
// left to do it: the one that started it was killed, or it was adopted unrecorded. A
// spawn that still runs (in this process or another) records its own worker.
func (h *Hive) promote(e Entry) {
	if claimantAlive(e) {
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Second)
	defer cancel()
	if !spawner.Healthy(ctx, h.http, e.URL()) {
		return // still loading, or not serving yet: the tick asks again
	}
	_, token := h.syncer.Queen()
	caps, err := spawner.Capabilities(ctx, h.http, e.URL(), token)
	var apiErr *wire.APIError
	if unauthorized := errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized; (err != nil && !unauthorized) || (err == nil && caps.WorkerID != e.ID) {
		return
	}
	_, err = h.reg.Transition(e.ID, e.PID, func(x *Entry) error {
		if x.State == StateStarting {
			x.State, x.LoadProgress = StateReady, 1
		}
		return nil
	})
	if err == nil {
		h.syncer.Trigger()
	}
}

// tick is the one ticker: liveness of adopted workers, registry changes made by other
// instances, stats for every live worker, log bounds, and now and then a look for
// running workers that no entry records.
func (h *Hive) tick(ctx context.Context) {
	t := time.NewTicker(livenessEvery)
	defer t.Stop()
	sampler := spawner.NewSampler()
	lastStats, lastTrim, lastScan := time.Time{}, time.Time{}, time.Now()
	watches := adoptedWatches{}
	defer watches.closeAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.reg.Reload(); err != nil {
			h.warnOnce("reload", "reload local registry; retried every tick", "err", err)
		} else {
			h.clearWarn("reload")
		}
		now := time.Now()
		if now.Sub(lastScan) >= unrecordedEvery {
			lastScan = now
			h.adoptUnrecorded()
		}
		entries := h.reg.List()
		h.mu.Lock()
		children := make(map[string]int, len(h.procs))
		for id, p := range h.procs {
			children[id] = p.PID
		}
		h.mu.Unlock()
		pids := map[string]int{}
		for _, e := range entries {
			if !e.State.Live() || e.Claimed() {
				continue
			}
			if pid, ok := children[e.ID]; !ok || pid != e.PID {
				switch {
				case watches.exited(e):
					h.checkAdopted(e, false)
				case e.State == StateStarting:
					h.promote(e)
				}
			}
			pids[e.ID] = e.PID
		}
		watches.keepOnly(pids)
		if now.Sub(lastStats) >= h.opts.StatsInterval-livenessEvery/2 {
			lastStats = now
			h.publishStats(sampler.Sample(pids))
		}
		if now.Sub(lastTrim) >= 10*time.Second {
			lastTrim = now
			for _, e := range entries {
				_ = spawner.TrimLog(e.LogFile, h.opts.MaxLogBytes)
			}
		}
	}
}

// adoptedWatches holds the exit watches of adopted workers, by id; the tick goroutine
// owns it.
type adoptedWatches map[string]adoptedWatch

type adoptedWatch struct {
	pid int
	w   *spawner.ExitWatch // nil where the kernel cannot watch: poll instead
}

// exited reports whether e's process may have gone and needs the full check: its watch
// fired, or there is no watch to ask.
func (ws adoptedWatches) exited(e Entry) bool {
	aw, ok := ws[e.ID]
	if !ok || aw.pid != e.PID {
		if ok && aw.w != nil {
			aw.w.Close()
		}
		aw = adoptedWatch{pid: e.PID}
		aw.w, _ = spawner.WatchExit(e.PID, e.ProcessStart)
		ws[e.ID] = aw
	}
	if aw.w == nil {
		return true
	}
	select {
	case <-aw.w.Exited:
		return true
	default:
		return false
	}
}

// keepOnly drops the watches of workers that are no longer live (pids: id -> pid).
func (ws adoptedWatches) keepOnly(pids map[string]int) {
	for id, aw := range ws {
		if pid, ok := pids[id]; !ok || pid != aw.pid {
			if aw.w != nil {
				aw.w.Close()
			}
			delete(ws, id)
		}
	}
}

func (ws adoptedWatches) closeAll() { ws.keepOnly(nil) }
