// Package queensync owns keeping a Queen's view in line with the local registry
// (Consul-style anti-entropy): register what the Queen lacks, deregister what was
// stopped, and record each worker's standing with the Queen. Never the reverse.
package queensync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/workerkey"
	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Config configures a Syncer.
type Config struct {
	Registry *localregistry.Registry
	Interval time.Duration // periodic full sync, jittered ±20%; default 3s
	// Retry is how often an unreachable Queen is probed (through its event stream);
	// it bounds how late a Queen that comes up is noticed. Default 250ms.
	Retry    time.Duration
	Logger   *slog.Logger
	OnStatus func(Status) // called (from the sync goroutine) when Status changes; may be nil
}

// Status is the Syncer's view of its Queen.
type Status struct {
	URL         string
	Reachable   bool
	LastContact time.Time
	LastError   string
	Registered  int // live local workers the Queen knows
	Pending     int // live local workers it does not (yet)
}

type target struct {
	url    string
	token  string
	client *queenclient.Client
	gen    int // bumps on every SetQueen, so a stale watcher stops
	// left is when we switched away from this Queen (retired targets only).
	left time.Time
}

// leaveGrace is how long a Queen we switched away from keeps our workers before we
// deregister them: Off and back to the same Queen (the embedded one, a retyped URL)
// leaves them where they are.
const leaveGrace = 500 * time.Millisecond

// Syncer runs the sync loop. Create with New, start with Run.
type Syncer struct {
	cfg     Config
	trigger chan struct{} // buffered 1: coalesces any number of requests into one sync
	running atomic.Bool   // Run is looping (a passive hive, the CLI's, never runs it)

	mu      sync.Mutex
	cur     target
	retired []target // Queens we left: deregister from them best-effort
	status  Status
	// keys remembers each worker process's identity key once read: a worker removes its
	// key file as it exits, and the deregistration that follows must still prove the key.
	// A process, not an id: a worker spawned again on the same port has the same id and
	// another key, and the two must never be mixed up.
	keys map[workerProc]string
	gone []goneWorker // exits reported by Gone, not yet withdrawn at the Queen
}

// maxGone bounds the exits kept for withdrawal while the Queen is unreachable; beyond
// it the Queen's own staleness check forgets them.
const maxGone = 256

// goneWorker is a worker process that ended, with the identity key that proves it.
type goneWorker struct {
	e   localregistry.Entry
	key string
}

// workerProc names one worker process: its id and pid.
type workerProc struct {
	id  string
	pid int
}

// New returns a Syncer for the registry; it targets no Queen until SetQueen.
func New(cfg Config) *Syncer {
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Syncer{cfg: cfg, trigger: make(chan struct{}, 1), keys: map[workerProc]string{}}
}

// Trigger asks for a full sync soon; it never blocks and many calls make one sync.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Queen returns the current Queen URL and token.
func (s *Syncer) Queen() (url, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.url, s.cur.token
}

// SetQueen switches the target ("" = Queenless) and triggers a full sync at once; the
// previous Queen is told, best-effort, that our workers left it.
func (s *Syncer) SetQueen(url, token string) error {
	var client *queenclient.Client
	if url != "" {
		var err error
		if client, err = queenclient.New(url, token, queenclient.Options{}); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.cur.url == url && s.cur.token == token {
		s.mu.Unlock()
		return nil
	}
	if s.cur.client != nil && s.cur.url != url {
		old := s.cur
		old.left = time.Now()
		s.retired = append(s.retired, old)
		time.AfterFunc(leaveGrace, s.Trigger)
	}
	// Coming back to a Queen we just left (Off, then the same embedded Queen) must not
	// deregister our workers from it after the sync registered them there.
	s.retired = slices.DeleteFunc(s.retired, func(t target) bool { return t.url == url })
	s.cur = target{url: url, token: token, client: client, gen: s.cur.gen + 1}
	s.status = Status{URL: url}
	s.mu.Unlock()
	s.Trigger()
	return nil
}

// Status returns the current view of the Queen.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run owns the sync loop and the Queen watcher until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	s.running.Store(true)
	defer s.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	watchedGen := -1
	var stopWatch context.CancelFunc = func() {}
	defer func() { stopWatch() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.trigger:
		case <-timer.C:
		}
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		if cur.gen != watchedGen {
			stopWatch()
			watchedGen = cur.gen
			wctx, cancel := context.WithCancel(ctx)
			stopWatch = cancel
			if cur.client != nil {
				wg.Add(1)
				go func() { defer wg.Done(); s.watch(wctx, cur) }()
			}
		}
		s.SyncFull(ctx)
		s.leaveRetired(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(jitter(s.cfg.Interval))
	}
}

// watch holds the Queen's event stream open. Opening it after a failure means the Queen
// came up (or restarted): sync at once. Events about our workers refresh their standing;
// a removal or the stream's end triggers a sync.
func (s *Syncer) watch(ctx context.Context, t target) {
	for ctx.Err() == nil {
		events, err := t.client.Events(ctx)
		if err == nil {
			s.Trigger()
			for ev := range events {
				switch ev.Type {
				case wire.EventRemoved, wire.EventOffline:
					s.Trigger()
				case wire.EventOnline, wire.EventStale, wire.EventRegistered, wire.EventUpdated, wire.EventSnapshot:
					s.applyQueenState(ev.Worker, t.url) // each event carries the worker's state
				}
			}
			s.Trigger() // the stream broke: the Queen may be gone or restarting
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Retry):
		}
	}
}

// applyQueenState records what the Queen says of one of our workers.
func (s *Syncer) applyQueenState(w wire.Worker, url string) {
	st := syncStateFor(w.State)
	_ = s.cfg.Registry.Update(func(m map[string]localregistry.Entry) error {
		e, ok := m[w.WorkerID]
		if !ok || !e.State.Live() || e.QueenURL != url || e.Port != w.Port || e.Sync == st {
			return nil
		}
		e.Sync = st
		m[e.ID] = e
		return nil
	})
}

func syncStateFor(st wire.WorkerState) localregistry.SyncState {
	switch st {
	case wire.StateOnline:
		return localregistry.SyncOnline
	case wire.StateRegistered:
		return localregistry.SyncRegistered
	case wire.StateStale, wire.StateOffline:
		return localregistry.SyncStale
	default:
		return localregistry.SyncPending
	}
}

// RegisterNow is the fast path after a spawn: register one entry at once and record the
// result. A failure leaves the entry pending for the background sync.
func (s *Syncer) RegisterNow(ctx context.Context, id string) error {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	e, ok := s.cfg.Registry.Get(id)
	if !ok {
		return fmt.Errorf("%w: %s", localregistry.ErrNotFound, id)
	}
	if cur.client == nil {
		s.setSync(id, e.PID, localregistry.SyncOff, "", "")
		return nil
	}
	if exited(e) {
		return fmt.Errorf("worker %s exited before it was registered", id)
	}
	resp, err := cur.client.Register(ctx, registration(e, s.workerKey(e)))
	if err != nil {
		s.setSync(id, e.PID, localregistry.SyncPending, cur.url, err.Error())
		s.noteFailure(cur, err)
		s.Trigger()
		return err
	}
	s.undoIfGone(ctx, cur, id)
	s.steerWorker(ctx, e, cur)
	s.recordRegistered(id, e.PID, syncStateFor(resp.State), cur.url)
	return nil
}

// afterRegistration is the sync state to record for e once the Queen at url answered
// st: a "registered" answer never lowers what the Queen's events already reported.
func afterRegistration(e localregistry.Entry, st localregistry.SyncState, url string) localregistry.SyncState {
	if st == localregistry.SyncRegistered && e.QueenURL == url &&
		(e.Sync == localregistry.SyncOnline || e.Sync == localregistry.SyncStale) {
		return e.Sync
	}
	return st
}

// recordRegistered records a registration's answer, except that it never lowers an
// entry the Queen already reported online (or stale) to "registered": the worker may
// have registered itself and heartbeated while our registration was on its way, and the
// Queen answers a re-registration with "registered" and sends no new state event.
func (s *Syncer) recordRegistered(id string, pid int, st localregistry.SyncState, url string) {
	_ = s.cfg.Registry.Update(func(m map[string]localregistry.Entry) error {
		e, ok := m[id]
		if !ok || e.PID != pid {
			return nil // replaced meanwhile; the next sync sees the new one
		}
		e.Sync, e.QueenURL, e.SyncError = afterRegistration(e, st, url), url, ""
		m[id] = e
		return nil
	})
}

// steerWorker hands the worker our Queen's URL itself when the worker does not already
// follow it: normally the Queen's capabilities fetch does that, but a Queen that cannot
// reach the worker (or has not yet) would leave it heartbeating to its previous Queen,
// which would then re-register it there. Only a worker that follows no Queen, or the
// Queen this entry was last synced with, is steered: one that follows another URL may
// be following the current Queen's advertised address, and must not be made to flap.
func (s *Syncer) steerWorker(ctx context.Context, e localregistry.Entry, cur target) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	caps, err := workerCapabilities(ctx, e.URL(), cur.token)
	if err != nil || caps.QueenURL == cur.url {
		return
	}
	if caps.QueenURL != "" && caps.QueenURL != e.QueenURL {
		return
	}
	if err := adoptWorker(ctx, e, s.workerKey(e), cur.token, cur.url); err != nil {
		s.cfg.Logger.Info("queen sync: could not hand the worker its new Queen; its own heartbeats stay with the old one",
			"worker", e.ID, "err", err)
	}
}

// workerCapabilities asks a local worker for its capabilities.
func workerCapabilities(ctx context.Context, base, token string) (wire.Capabilities, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+wire.PathCapabilities, nil)
	if err != nil {
		return wire.Capabilities{}, err
	}
	return askWorker(req, token)
}

// adoptWorker hands a local worker the Queen at queenURL (POST /adopt), proving the
// worker's identity key from its key file (the hive spawned it; docs/security.md).
func adoptWorker(ctx context.Context, e localregistry.Entry, key, token, queenURL string) error {
	body, err := json.Marshal(wire.AdoptRequest{QueenURL: queenURL, QueenToken: token})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL()+wire.PathAdopt, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(wire.HeaderWorkerKey, key)
	}
	_, err = askWorker(req, token)
	return err
}

// askWorker sends req to a local worker and decodes the capabilities it answers.
func askWorker(req *http.Request, token string) (wire.Capabilities, error) {
	var caps wire.Capabilities
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return caps, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxCapabilitiesBody))
	if err != nil {
		return caps, err
	}
	if resp.StatusCode != http.StatusOK {
		return caps, wire.DecodeError(resp.StatusCode, body)
	}
	return caps, json.Unmarshal(body, &caps)
}

// undoIfGone deregisters id again when its worker stopped while we were registering it
// (a Stop deregisters first, then our registration lands): without this the Queen keeps
// a ghost until the next full sync. A new live worker under the same id keeps it.
func (s *Syncer) undoIfGone(ctx context.Context, t target, id string) {
	e, ok := s.cfg.Registry.Get(id)
	if ok && e.State.Live() && e.State != localregistry.StateStopping && !exited(e) {
		return
	}
	if err := t.client.DeregisterWorker(ctx, id, s.workerKey(e)); err != nil {
		s.cfg.Logger.Info("queen sync: withdraw a stopped worker's registration; the next sync retries", "worker", id, "err", err)
		s.Trigger()
	}
}

// exited reports whether an entry the registry still calls live has a process that
// ended (its exit not recorded yet, e.g. an idle TTL just ran out): registering it would
// leave the Queen a ghost that held requests wait for.
func exited(e localregistry.Entry) bool {
	return e.PID > 0 && !spawner.Alive(e.PID, e.ProcessStart)
}

// stillGone reports whether id has no live worker in the registry now (not just in the
// snapshot): a worker spawned again on the same port reuses the id.
func (s *Syncer) stillGone(id string) bool {
	e, ok := s.cfg.Registry.Get(id)
	return !ok || !e.State.Live()
}

// Gone reports that the worker process of e ended (crashed, killed, stopped) and asks
// for a sync, which withdraws its registration proving that process's key. The key is
// read now: a successor spawned on the same port soon holds the id in the registry, and
// the dead worker's record would refuse the successor's registrations (another key)
// until the Queen found it stale.
//
// Without a sync loop (a passive hive: `beekeeper spawn`, whose claim of a port can
// replace a dead worker's entry) the withdrawal is made at once, bounded by a second.
func (s *Syncer) Gone(e localregistry.Entry) {
	key := s.workerKey(e)
	if !s.running.Load() {
		s.withdrawNow(e, key)
		return
	}
	s.mu.Lock()
	if len(s.gone) < maxGone {
		s.gone = append(s.gone, goneWorker{e: e, key: key})
	}
	s.mu.Unlock()
	s.Trigger()
}

// withdrawNow deregisters the exited worker of e at the current Queen, proving key;
// best-effort: a Queen that does not answer finds the record stale on its own.
func (s *Syncer) withdrawNow(e localregistry.Entry, key string) {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if cur.client == nil || key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := cur.client.DeregisterWorker(ctx, e.ID, key); err != nil && !refusedOrUnknown(err) {
		s.cfg.Logger.Info("queen sync: withdraw an exited worker's registration; the Queen forgets it when it goes stale", "worker", e.ID, "err", err)
	}
}

// refusedOrUnknown reports whether the Queen answered a deregistration with 404 (the
// record is gone already) or 409 (the id is bound to another key: a successor's now).
func refusedOrUnknown(err error) bool {
	var apiErr *wire.APIError
	return errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusConflict)
}

// withdrawGone deregisters the workers reported Gone that the Queen still lists at their
// address, and drops them from atQueen so that a successor is registered in the same
// sync. The key decides: a successor's record (same id, its own key) is refused, not
// removed. An exit whose withdrawal failed on the way is kept for the next sync.
func (s *Syncer) withdrawGone(ctx context.Context, cur target, atQueen map[string]wire.Worker) {
	s.mu.Lock()
	gone := s.gone
	s.gone = nil
	s.mu.Unlock()
	var retry []goneWorker
	for _, g := range gone {
		w, ok := atQueen[g.e.ID]
		if !ok || g.key == "" || w.Hostname != g.e.AdvertiseHost || w.Port != g.e.Port {
			continue // not there, or (no key) the full sync's registry check decides
		}
		err := cur.client.DeregisterWorker(ctx, g.e.ID, g.key)
		switch {
		case err == nil:
			delete(atQueen, g.e.ID)
		case refusedOrUnknown(err):
			// Already gone, or the id is a successor's now.
		default:
			retry = append(retry, g)
		}
	}
	if len(retry) > 0 {
		s.mu.Lock()
		s.gone = append(retry, s.gone...)
		if len(s.gone) > maxGone {
			s.gone = s.gone[:maxGone]
		}
		s.mu.Unlock()
	}
}

// DeregisterAt tells the Queen at url (the one the worker was registered with; "" = the
// current one) that the worker process of e was stopped, proving that process's key (a
// successor on the same port has the same id and another key). Best-effort: the next
// full sync repeats it if the current Queen still lists it.
func (s *Syncer) DeregisterAt(ctx context.Context, url string, e localregistry.Entry) error {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	client := cur.client
	if url != "" && url != cur.url {
		var err error
		if client, err = queenclient.New(url, cur.token, queenclient.Options{}); err != nil {
			return err
		}
	}
	if client == nil {
		return nil
	}
	return client.DeregisterWorker(ctx, e.ID, s.workerKey(e))
}

func (s *Syncer) setSync(id string, pid int, st localregistry.SyncState, url, errText string) {
	_ = s.cfg.Registry.Update(func(m map[string]localregistry.Entry) error {
		e, ok := m[id]
		if !ok || e.PID != pid {
			return nil // replaced meanwhile; the next sync sees the new one
		}
		e.Sync, e.QueenURL, e.SyncError = st, url, errText
		m[id] = e
		return nil
	})
}

// workerKey is the identity key the worker process of e wrote to its key file, or the
// one read from it before it exited; "" when there is none (an older worker). The Queen
// binds the worker's id to it, so our registrations and deregistrations must prove it
// as the worker's own do. The file is e's only when it names e's pid: a killed worker
// leaves its file behind, and its successor on the same port overwrites it.
func (s *Syncer) workerKey(e localregistry.Entry) string {
	if e.ID == "" {
		return ""
	}
	key, pid, _ := workerkey.Read(e.ID, e.Port)
	s.mu.Lock()
	defer s.mu.Unlock()
	if key != "" && pid > 0 {
		s.keys[workerProc{e.ID, pid}] = key
	}
	if key != "" && (pid == e.PID || pid == 0 || e.PID == 0) {
		return key
	}
	return s.keys[workerProc{e.ID, e.PID}]
}

// forgetKeys drops the remembered keys of worker processes the registry no longer holds.
func (s *Syncer) forgetKeys(snapshot []localregistry.Entry) {
	held := make(map[workerProc]bool, len(snapshot))
	for _, e := range snapshot {
		held[workerProc{e.ID, e.PID}] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.keys {
		if !held[p] {
			delete(s.keys, p)
		}
	}
}

func registration(e localregistry.Entry, key string) wire.RegisterRequest {
	return wire.RegisterRequest{
		WorkerID:   e.ID,
		Hostname:   e.AdvertiseHost,
		Port:       e.Port,
		WorkerType: e.WorkerType,
		Model:      e.Model,
		SpawnedBy:  e.SpawnedBy,
		// The order completes at the Queen with the registration, whoever sends it.
		SpawnOrderID: e.SpawnOrder,
		WorkerKey:    key,
	}
}

// SyncFull brings the current Queen in line with the registry. The registry lock is
// only taken for the snapshot and for recording the outcome, never across a network
// call; an entry edited meanwhile keeps its edit and gets another sync.
func (s *Syncer) SyncFull(ctx context.Context) {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	snapshot := s.cfg.Registry.List()
	outcome := map[string]localregistry.Entry{} // id -> entry as synced (pid guards edits)

	if cur.client == nil {
		s.mu.Lock()
		s.gone = nil // Queenless: nobody holds a registration to withdraw
		s.mu.Unlock()
		for _, e := range snapshot {
			if e.Sync != localregistry.SyncOff || e.QueenURL != "" {
				e.Sync, e.QueenURL, e.SyncError = localregistry.SyncOff, "", ""
				outcome[e.ID] = e
			}
		}
		s.record(outcome, Status{}, true)
		return
	}

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	listed, err := cur.client.List(cctx)
	if err != nil {
		for _, e := range snapshot {
			if e.State.Live() && (e.Sync != localregistry.SyncPending || e.QueenURL != cur.url) {
				e.Sync, e.QueenURL, e.SyncError = localregistry.SyncPending, cur.url, err.Error()
				outcome[e.ID] = e
			}
		}
		st := s.Status()
		st.URL, st.Reachable, st.LastError = cur.url, false, err.Error()
		st.Registered, st.Pending = 0, countLive(snapshot)
		s.record(outcome, st, false)
		return
	}
	atQueen := make(map[string]wire.Worker, len(listed))
	for _, w := range listed {
		atQueen[w.WorkerID] = w
	}
	s.withdrawGone(cctx, cur, atQueen)
	live := map[string]bool{}
	var firstErr error
	registered, pending := 0, 0
	for _, e := range snapshot {
		if !e.State.Live() {
			continue
		}
		live[e.ID] = true
		if e.State != localregistry.StateReady {
			continue // registered once it serves
		}
		key := s.workerKey(e) // remembered now: Gone needs it once the worker removed its file
		w, ok := atQueen[e.ID]
		next := e
		next.QueenURL, next.SyncError = cur.url, ""
		if ok && w.Hostname == e.AdvertiseHost && w.Port == e.Port && w.State != wire.StateOffline {
			next.Sync = syncStateFor(w.State)
			registered++
		} else if exited(e) {
			continue // its exit is about to be recorded; then it is deregistered
		} else {
			resp, err := cur.client.Register(cctx, registration(e, key))
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				next.Sync, next.SyncError = localregistry.SyncPending, err.Error()
				pending++
			} else {
				s.undoIfGone(cctx, cur, e.ID)
				s.steerWorker(cctx, e, cur)
				next.Sync = syncStateFor(resp.State)
				registered++
			}
		}
		if !sameSync(e, next) {
			outcome[e.ID] = next
		}
	}
	// Deregister what was stopped here but is still listed there with our address.
	for _, e := range snapshot {
		if e.State.Live() || live[e.ID] {
			continue
		}
		if w, ok := atQueen[e.ID]; ok && w.Hostname == e.AdvertiseHost && w.Port == e.Port && s.stillGone(e.ID) {
			if err := cur.client.DeregisterWorker(cctx, e.ID, s.workerKey(e)); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if e.Sync != localregistry.SyncOff {
			e.Sync, e.SyncError = localregistry.SyncOff, ""
			outcome[e.ID] = e
		}
	}
	s.forgetKeys(snapshot)
	st := Status{URL: cur.url, Reachable: true, LastContact: time.Now(), Registered: registered, Pending: pending}
	if firstErr != nil {
		st.LastError = firstErr.Error()
	}
	s.record(outcome, st, true)
}

func sameSync(a, b localregistry.Entry) bool {
	return a.Sync == b.Sync && a.QueenURL == b.QueenURL && a.SyncError == b.SyncError
}

func countLive(es []localregistry.Entry) int {
	n := 0
	for _, e := range es {
		if e.State.Live() {
			n++
		}
	}
	return n
}

// record writes the sync outcome for entries that are still the process we synced, and
// publishes the status.
func (s *Syncer) record(outcome map[string]localregistry.Entry, st Status, reachable bool) {
	if len(outcome) > 0 {
		err := s.cfg.Registry.Update(func(m map[string]localregistry.Entry) error {
			for id, want := range outcome {
				e, ok := m[id]
				if !ok || e.PID != want.PID || e.State != want.State {
					continue
				}
				e.Sync, e.QueenURL, e.SyncError = afterRegistration(e, want.Sync, want.QueenURL), want.QueenURL, want.SyncError
				m[id] = e
			}
			return nil
		})
		if err != nil {
			s.cfg.Logger.Warn("queen sync: record outcome", "err", err)
		}
	}
	s.mu.Lock()
	if s.cur.url != st.URL { // switched meanwhile: this outcome is old news
		s.mu.Unlock()
		return
	}
	changed := s.status != st
	if !reachable {
		st.LastContact = s.status.LastContact
		changed = s.status.Reachable || s.status.LastError != st.LastError || s.status.Pending != st.Pending
	}
	s.status = st
	s.mu.Unlock()
	if changed && s.cfg.OnStatus != nil {
		s.cfg.OnStatus(st)
	}
}

func (s *Syncer) noteFailure(t target, err error) {
	s.mu.Lock()
	if s.cur.url == t.url {
		s.status.LastError = err.Error()
		var ue *queenclient.UnreachableError
		if errors.As(err, &ue) {
			s.status.Reachable = false
		}
	}
	s.mu.Unlock()
}

// leaveRetired deregisters our live workers from Queens we switched away from,
// best-effort and bounded: an unreachable old Queen forgets them on its own.
func (s *Syncer) leaveRetired(ctx context.Context) {
	s.mu.Lock()
	var retired []target
	s.retired = slices.DeleteFunc(s.retired, func(t target) bool {
		if time.Since(t.left) < leaveGrace {
			return false // AfterFunc in SetQueen triggers the sync that leaves it
		}
		retired = append(retired, t)
		return true
	})
	s.mu.Unlock()
	if len(retired) == 0 {
		return
	}
	entries := s.cfg.Registry.List()
	for _, t := range retired {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		for _, e := range entries {
			if !e.State.Live() {
				continue
			}
			if s.isCurrent(t.url) {
				break // switched back to it meanwhile (Off, then the same Queen again)
			}
			if err := t.client.DeregisterWorker(cctx, e.ID, s.workerKey(e)); err != nil {
				s.cfg.Logger.Info("queen sync: leave old queen", "queen", t.url, "worker", e.ID, "err", err)
				break
			}
		}
		cancel()
		if s.isCurrent(t.url) {
			s.Trigger() // a deregistration may have crossed the switch back: register again
		}
	}
}

func (s *Syncer) isCurrent(url string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.url == url
}

func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}
