package hive

import (
	"errors"
	"fmt"
	"time"

	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// A worker's state changes only through the registry's Transition (or an Update), which
// checks each change against localregistry's transition table in one place:
//
//	(new)    -> starting (claimed: port reserved, pid 0; then its pid), ready (adopted serving)
//	starting -> ready, stopping, exited, crashed
//	ready    -> stopping, exited, crashed
//	stopping -> exited, crashed, or back to starting/ready when the stop failed
//	crashed  -> exited (the parent's reap: a clean exit another hive saw only as a death)
//	exited   -> (final; a new process under the id is a new entry)
//
// The functions below are the hive's writers: reserve, recordStarted, the ready step in
// Spawn, markGone, Stop's marks, promote and the adoption in adopt.go.

// reserve claims a port for one spawn attempt under the registry's lock: the asked port,
// or the first of the range, that no live entry holds and that binds now. The claim is
// recorded (state starting, pid 0, claimed by this process) before anything starts, so
// spawns in this process and in others (the app, `beekeeper spawn`) never pick one port.
// skip holds the ports that already failed in this spawn.
func (h *Hive) reserve(claim Entry, port int, skip map[int]bool) (Entry, error) {
	if h.isClosed() {
		return Entry{}, ErrClosed
	}
	min, max := h.PortRange()
	var out, replaced Entry
	err := h.reg.Update(func(m map[string]Entry) error {
		replaced = Entry{}
		taken := map[int]bool{}
		for p := range skip {
			taken[p] = true
		}
		heldBy := map[int]string{}
		for _, e := range m {
			if holdsPort(e) {
				taken[e.Port], heldBy[e.Port] = true, e.ID
			}
		}
		if port == 0 {
			var err error
			if port, err = spawner.FreePort(claim.BindHost, min, max, taken); err != nil {
				return err
			}
		} else if id, held := heldBy[port]; held {
			return &spawner.StartError{Kind: ErrPortTaken, Port: port, ExitCode: -1, Err: fmt.Errorf("worker %s holds it", id)}
		} else if !spawner.PortFree(claim.BindHost, port) {
			return &spawner.StartError{Kind: ErrPortTaken, Port: port, ExitCode: -1}
		}
		e := claim
		e.ID = wire.WorkerID(claim.WorkerType, claim.AdvertiseHost, port)
		e.Port, e.LogFile, e.StartedAt = port, h.sp.LogFile(e.ID), time.Now().UTC()
		if old, ok := m[e.ID]; ok && old.State.Live() && old.PID > 0 {
			replaced = old // its process is gone, its exit not recorded yet
		}
		m[e.ID] = e // replaces only an entry that holds nothing: exited, or its process gone
		out = e
		return nil
	})
	if err != nil {
		return Entry{}, fmt.Errorf("claim a port: %w", err)
	}
	if replaced.ID != "" {
		// Its exit will never be recorded now: withdraw its registration with its own key
		// before the new worker, same id, asks to be registered.
		h.syncer.Gone(replaced)
	}
	return out, nil
}

// recordStarted records the process of a claim the moment it has started.
func (h *Hive) recordStarted(id string, pid int) (Entry, error) {
	if h.isClosed() {
		return Entry{}, ErrClosed
	}
	ct, _ := spawner.CreateTime(pid)
	e, err := h.reg.Transition(id, 0, func(e *Entry) error {
		e.PID, e.ProcessStart = pid, ct
		return nil
	})
	if errors.Is(err, localregistry.ErrReplaced) {
		// A registry rebuilt meanwhile (corrupt file) may already hold this very process.
		if cur, ok := h.reg.Get(id); ok && cur.PID == pid {
			return cur, nil
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("record started worker %s: %w", id, err)
	}
	return e, nil
}

// forget removes the entry of a start attempt that never served (its claim, or its
// process): only while it is still that attempt's.
func (h *Hive) forget(e Entry) {
	if e.ID == "" {
		return
	}
	err := h.reg.Update(func(m map[string]Entry) error {
		if cur, ok := m[e.ID]; ok && cur.PID == e.PID {
			delete(m, e.ID)
		}
		return nil
	})
	if err != nil {
		// A claim left behind holds its port only while this process runs; a started one
		// is marked gone by the next check of its pid.
		h.log.Warn("forget a failed start", "id", e.ID, "err", err)
	}
}

// markGone records a worker's exit: "exited" when asked to stop or clean, else "crashed".
// An error means the registry could not be written: the entry still says what it said,
// and the stop mark is kept so that a retry (the tick's, or the next hive's) records
// "exited". An entry that is gone or holds another process is not an error.
func (h *Hive) markGone(id string, pid int, code *int, reason string) error {
	h.mu.Lock()
	asked := h.stopping[id]
	if p := h.procs[id]; p != nil && p.PID == pid {
		delete(h.procs, id) // gone either way: from now on the tick checks its pid
	}
	h.mu.Unlock()
	wasLive := false
	gone, err := h.reg.Transition(id, pid, func(e *Entry) error {
		wasLive = e.State.Live()
		if !e.State.Live() {
			// Another hive on this registry (watching it as adopted) saw it go first and
			// could not know the exit code; the parent's reap fills it in.
			if code == nil || e.ExitCode != nil {
				return nil
			}
			asked = asked || e.State == StateExited
		}
		// StateStopping is in the shared file: a stop asked by another hive counts too.
		asked = asked || e.State == StateStopping
		e.State = StateCrashed
		if asked || (code != nil && *code == wire.ExitOK) {
			e.State = StateExited
		}
		e.ExitCode = code
		e.ExitReason = reason
		if code != nil && reason == "" {
			e.ExitReason = wire.ExitReason(*code)
			if *code < 0 {
				e.ExitReason = "killed by a signal"
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, localregistry.ErrNotFound) && !errors.Is(err, localregistry.ErrReplaced) {
		return err
	}
	h.mu.Lock()
	delete(h.stopping, id)
	delete(h.warned, "exit:"+id)
	h.mu.Unlock()
	if err == nil && wasLive {
		h.syncer.Gone(gone) // withdrawn with its own key, before a successor takes the id
	} else {
		h.syncer.Trigger()
	}
	return nil
}

// holdsPort reports whether an entry still holds its port: live, and its process runs
// or (a claim not started yet) the process that claimed it does.
func holdsPort(e Entry) bool {
	switch {
	case !e.State.Live():
		return false
	case e.PID == 0:
		return claimantAlive(e)
	default:
		return spawner.Alive(e.PID, e.ProcessStart)
	}
}

// claimantAlive reports whether the process that claimed the entry (its spawn) runs.
func claimantAlive(e Entry) bool {
	return e.ClaimPID > 0 && spawner.Alive(e.ClaimPID, e.ClaimStart)
}

// warnOnce logs a failure that a loop retries once, not on every retry, until
// clearWarn(key) records that it succeeded.
func (h *Hive) warnOnce(key, msg string, args ...any) {
	h.mu.Lock()
	logged := h.warned[key]
	h.warned[key] = true
	h.mu.Unlock()
	if !logged {
		h.log.Warn(msg, args...)
	}
}

func (h *Hive) clearWarn(key string) {
	h.mu.Lock()
	delete(h.warned, key)
	h.mu.Unlock()
}
