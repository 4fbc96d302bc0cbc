package queen

import (
	"crypto/subtle"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/broadcast"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// eventBuffer is how far a subscriber may fall behind before it is dropped: the registry
// never waits for a slow reader.
const eventBuffer = 256

// record is the registry's view of one worker.
type record struct {
	w        wire.Worker
	lastSeen time.Time // the last heartbeat, or the registration before any
	queenURL string    // handed to the worker on the capabilities fetch
	// key is the worker's identity key, bound by the first registration or heartbeat
	// that carried one; "" while none did. Never shown: wire.Worker has no field for it.
	key string

	gen      uint64 // bumped by each registration; stale fetch results are dropped
	fetching bool   // a capabilities fetch job for this record is queued or running

	spawnOrder string // the spawn order it was started for, if its registration said so

	inflight int       // requests the gateway routes to it right now
	failedAt time.Time // the gateway failed to reach it; cleared by a heartbeat
}

// registry is one mutex-guarded map of workers plus the subscribers of its changes.
type registry struct {
	now        func() time.Time
	interval   time.Duration
	retention  time.Duration
	maxWorkers int // new ids beyond it are refused

	mu      sync.Mutex
	workers map[string]*record
	// events fans changes out to the event streams; published under mu, so a
	// subscription taken with a snapshot under mu misses nothing and repeats nothing.
	events broadcast.Hub[wire.Event]
	gens   uint64 // registration generations, unique across records
	// changed is closed (and dropped) by the next event; nil until someone waits. The
	// gateway's held requests wait on it for their model's worker.
	changed chan struct{}
}

func newRegistry(now func() time.Time, interval, retention time.Duration, maxWorkers int) *registry {
	return &registry{
		now:        now,
		interval:   interval,
		retention:  retention,
		maxWorkers: maxWorkers,
		workers:    make(map[string]*record),
	}
}

func workerURL(host string, port int) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// registerResult tells the handler what happened.
type registerResult struct {
	worker wire.Worker
	rec    *record // the record a capabilities fetch belongs to
	fetch  bool    // the caller must make sure a capabilities fetch runs
}

func errTooManyWorkers(limit int) error {
	return wire.NewError(http.StatusServiceUnavailable, wire.CodeBusy,
		"this Queen already holds its limit of %d workers: deregister stopped ones (DELETE %s/{id}) or wait for offline ones to be removed", limit, wire.PathWorkers)
}

func errKeyMismatch(id string) error {
	return wire.NewError(http.StatusConflict, wire.CodeWorkerKeyMismatch,
		"worker_id %q is bound to another worker process's identity key: a worker proves its id with the worker_key it registered with; if this is that worker restarted, wait until the old record goes stale, or give it another id", id)
}

// keyMatches reports whether key proves the record's identity: a record bound to no key
// yet accepts any.
func (rec *record) keyMatches(key string) bool {
	return rec.key == "" || subtle.ConstantTimeCompare([]byte(rec.key), []byte(key)) == 1
}

// live reports whether the record's worker counts as alive (registered or online): its
// id cannot be taken by another worker.
func (rec *record) live() bool {
	return rec.w.State == wire.StateRegistered || rec.w.State == wire.StateOnline
}

// register stores or updates a worker. An id bound to another identity key, or (bound
// to none) held by another host:port, is a conflict while its holder is alive
// (registered or online); a stale or offline holder is replaced. The key proves the id:
// a worker that presents it may change its address. A new id beyond maxWorkers is
// refused; a known id always re-registers.
func (r *registry) register(req wire.RegisterRequest, queenURL string) (registerResult, error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[req.WorkerID]
	if ok {
		switch {
		case !rec.keyMatches(req.WorkerKey):
			if rec.live() {
				return registerResult{}, errKeyMismatch(req.WorkerID)
			}
			ok = false // a dead holder: replace it
		case rec.key == "" && (rec.w.Hostname != req.Hostname || rec.w.Port != req.Port):
			if rec.live() {
				return registerResult{}, errConflict(req.WorkerID, rec.w.URL)
			}
			ok = false
		}
	}
	if _, known := r.workers[req.WorkerID]; !known && len(r.workers) >= r.maxWorkers {
		return registerResult{}, errTooManyWorkers(r.maxWorkers)
	}
	if !ok {
		rec = &record{w: wire.Worker{
			WorkerID:     req.WorkerID,
			State:        wire.StateRegistered,
			RegisteredAt: now,
		}}
		r.workers[req.WorkerID] = rec
	}
	rec.w.Hostname = req.Hostname
	rec.w.Port = req.Port
	rec.w.URL = workerURL(req.Hostname, req.Port)
	rec.w.WorkerType = req.WorkerType
	rec.w.Model = req.Model
	rec.w.SpawnedBy = req.SpawnedBy
	rec.queenURL = queenURL
	if rec.key == "" {
		rec.key = req.WorkerKey // the first key binds the id
	}
	if req.SpawnOrderID != "" {
		rec.spawnOrder = req.SpawnOrderID
	}
	r.gens++
	rec.gen = r.gens
	event := wire.EventUpdated
	if rec.w.State != wire.StateOnline {
		// The spawner vouches for it again: back to registered until it heartbeats.
		rec.w.State = wire.StateRegistered
		rec.lastSeen = now
		event = wire.EventRegistered
	}
	if !ok {
		event = wire.EventRegistered
	}
	r.publish(event, rec, now)
	res := registerResult{worker: rec.w, rec: rec, fetch: !rec.fetching}
	rec.fetching = true
	return res, nil
}

// heartbeat marks a worker alive: nil, errUnknownWorker for an unknown id, or
// errKeyMismatch when the id is bound to another identity key (the worker then
// registers again). A record bound to no key yet is bound to the heartbeat's.
func (r *registry) heartbeat(hb wire.Heartbeat) error {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[hb.WorkerID]
	if !ok {
		return errHeartbeatUnknown(hb.WorkerID)
	}
	if !rec.keyMatches(hb.WorkerKey) {
		return errKeyMismatch(hb.WorkerID)
	}
	if rec.key == "" {
		rec.key = hb.WorkerKey
	}
	rec.lastSeen = now
	rec.failedAt = time.Time{}
	t := now
	rec.w.LastHeartbeatAt = &t
	rec.w.ActiveRequests = hb.ActiveRequests + hb.QueuedRequests
	rec.w.Slots, rec.w.KVCacheTokens, rec.w.KVCacheCapacity = hb.Slots, hb.KVCacheTokens, hb.KVCacheCapacity
	// A change of device is news to the Queen's screens; load figures are not (they
	// change with every heartbeat and would flood the event stream).
	statusChanged := rec.w.Status != hb.Status || rec.w.Device != hb.Device || rec.w.Runtime != hb.Runtime
	rec.w.Status, rec.w.Device, rec.w.Runtime, rec.w.DeviceFreeBytes = hb.Status, hb.Device, hb.Runtime, hb.DeviceFreeBytes
	switch {
	case rec.w.State != wire.StateOnline:
		rec.w.State = wire.StateOnline
		r.publish(wire.EventOnline, rec, now)
	case statusChanged:
		r.publish(wire.EventUpdated, rec, now)
	}
	return nil
}

// remove deletes a worker at once (DELETE /v1/workers/{id}). A live worker bound to an
// identity key is removed only with that key: otherwise anyone could remove it and
// register its id at their own address.
func (r *registry) remove(id, key string) (wire.Worker, error) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[id]
	if !ok {
		return wire.Worker{}, errUnknownWorker(id)
	}
	if rec.live() && !rec.keyMatches(key) {
		return wire.Worker{}, errKeyMismatch(id)
	}
	delete(r.workers, id)
	r.publish(wire.EventRemoved, rec, now)
	return rec.w, nil
}

// fetchTarget is what a capabilities fetch needs to know. A fetch belongs to the record
// it started for: a record deleted or replaced (same id, new record) ends its fetch, and
// the new record runs its own.
type fetchTarget struct {
	rec                    *record
	id, url, queenURL, key string
	gen                    uint64
}

// target reads the current fetch target of rec; false when rec is no longer the
// registry's record for its id.
func (r *registry) target(rec *record) (fetchTarget, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := rec.w.WorkerID
	if r.workers[id] != rec {
		return fetchTarget{}, false
	}
	return fetchTarget{rec: rec, id: id, url: rec.w.URL, queenURL: rec.queenURL, key: rec.key, gen: rec.gen}, true
}

// fetchDone stores a fetch's result (caps nil on failure) if the record was not
// re-registered meanwhile. It reports whether another fetch must run for a newer
// registration of the same record; otherwise the record's fetch ownership ends.
func (r *registry) fetchDone(t fetchTarget, caps *wire.Capabilities) (again bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := t.rec
	if r.workers[t.id] != rec {
		return false // deleted or replaced: a new record has a fetch of its own
	}
	if rec.gen != t.gen {
		return true
	}
	rec.fetching = false
	if caps != nil {
		rec.w.Capabilities = caps
		r.publish(wire.EventUpdated, rec, now)
	}
	return false
}

// fetchDropped ends the fetch ownership of a record whose fetch was never queued, so its
// next registration queues one again.
func (r *registry) fetchDropped(rec *record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec.fetching = false
}

// sweep moves silent workers along online -> stale -> offline -> removed.
func (r *registry) sweep() {
	now := r.now()
	staleAfter := wire.StaleAfter * r.interval
	offlineAfter := wire.OfflineAfter * r.interval
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, rec := range r.workers {
		silent := now.Sub(rec.lastSeen)
		switch {
		case silent >= offlineAfter+r.retention:
			delete(r.workers, id)
			r.publish(wire.EventRemoved, rec, now)
		case silent >= offlineAfter:
			if rec.w.State != wire.StateOffline {
				rec.w.State = wire.StateOffline
				r.publish(wire.EventOffline, rec, now)
			}
		case silent >= staleAfter:
			if rec.w.State == wire.StateOnline || rec.w.State == wire.StateRegistered {
				rec.w.State = wire.StateStale
				r.publish(wire.EventStale, rec, now)
			}
		}
	}
}

// workerForOrder finds a live (registered or online) worker whose registration carried
// spawn order orderID. The order book calls it holding its own lock: the lock order is
// orders, then registry.
func (r *registry) workerForOrder(orderID string) (wire.Worker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.workers {
		if rec.spawnOrder == orderID && rec.live() {
			return rec.w, true
		}
	}
	return wire.Worker{}, false
}

func (r *registry) get(id string) (wire.Worker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[id]
	if !ok {
		return wire.Worker{}, false
	}
	return rec.w, true
}

func (r *registry) list() []wire.Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.listLocked()
}

func (r *registry) listLocked() []wire.Worker {
	out := make([]wire.Worker, 0, len(r.workers))
	for _, rec := range r.workers {
		out = append(out, rec.w)
	}
	slices.SortFunc(out, func(a, b wire.Worker) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	return out
}

// countByState counts workers per state (for /metrics).
func (r *registry) countByState() map[wire.WorkerState]int {
	counts := map[wire.WorkerState]int{
		wire.StateRegistered: 0, wire.StateOnline: 0, wire.StateStale: 0, wire.StateOffline: 0,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.workers {
		counts[rec.w.State]++
	}
	return counts
}

// subscribe returns a snapshot and a channel of later events, taken atomically so no
// change falls between the two.
func (r *registry) subscribe() ([]wire.Worker, <-chan wire.Event, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A stream that falls eventBuffer behind is closed: its client reconnects and
	// reads a fresh snapshot rather than a history with holes.
	ch, cancel := r.events.Subscribe(broadcast.CloseWhenFull, eventBuffer)
	return r.listLocked(), ch, cancel
}

// watch returns a channel closed by the registry's next change (any event).
func (r *registry) watch() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// comingFor reports whether a worker serving model is registered or loading: it will
// be online soon, so a held request waits for it rather than ordering another.
func (r *registry) comingFor(model string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.workers {
		if servesModel(rec, model) && (rec.w.State == wire.StateRegistered ||
			rec.w.State == wire.StateOnline && rec.w.Status == wire.StatusLoading) {
			return true
		}
	}
	return false
}

// wake closes the channel watch handed out, if any. Caller holds r.mu.
func (r *registry) wake() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// liveWorker reports whether worker id is registered or online.
func (r *registry) liveWorker(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[id]
	return ok && rec.live()
}

// close ends every subscription; later ones get a closed channel.
func (r *registry) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events.Close()
}

// publish fans an event out without blocking: a subscriber whose buffer is full is
// dropped (its channel closed) rather than stalling the registry. Caller holds r.mu.
func (r *registry) publish(typ string, rec *record, at time.Time) {
	r.wake()
	if r.events.Len() == 0 {
		return
	}
	r.events.Publish(wire.Event{Type: typ, Worker: rec.w, At: at})
}
