package queen

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Spawn orders (docs/protocol.md §4.7, wire/spawn.go): someone asks for a worker serving a model,
// a hive takes the order and spawns the worker, and the worker's registration (or the
// hive's report) completes it. The book lives in memory like the worker registry: a
// restarted Queen forgets its orders. A requester then gets 404 for its order id and asks
// again; nothing is spawned twice, because an order nobody took spawned nothing, and the
// worker of a taken one registers (and serves) anyway.

const (
	// maxOrderWait caps the long-poll of GET /v1/spawn-orders?wait=D; a longer D waits
	// this long.
	maxOrderWait = 60 * time.Second
	// maxCtxSize bounds an order's ctx_size.
	maxCtxSize = 1 << 20
	// maxOrderIDLen bounds the order ids the Queen accepts (its own are 22 characters).
	maxOrderIDLen = wire.MaxWorkerIDLen
	// maxClaimToken bounds a claim's token (hives send 22 characters).
	maxClaimToken = 128
	// maxOrderError bounds the error text a hive reports; longer text is cut.
	maxOrderError = 2048
	// cancelledError is the Error of a cancelled order (state failed).
	cancelledError = "cancelled by request"
	// codeUnknownOrder is the code of a 404 for an order id the Queen does not know.
	codeUnknownOrder = "unknown_order"
)

// Spawn order results of beekeeper_queen_spawn_orders_total.
const (
	resultCreated   = "created"
	resultTaken     = "taken"
	resultDone      = "done"
	resultFailed    = "failed"
	resultCancelled = "cancelled"
	resultExpired   = "expired"
)

// orderRec is the book's view of one order.
type orderRec struct {
	o          wire.SpawnOrder
	seq        uint64    // creation order, for a stable listing
	leaseUntil time.Time // taken: the hive must renew its claim before this
	token      string    // taken: the claim's token; only it renews (two hives may share a name)
	endedAt    time.Time // done or failed: retention counts from here
	cancelled  bool      // failed because someone cancelled it
}

// orderBook is one mutex-guarded map of spawn orders. Every change closes and replaces
// changed, which wakes the long-polls.
type orderBook struct {
	now       func() time.Time
	lease     time.Duration
	retention time.Duration
	maxOpen   int // orders not ended; new ones beyond it are refused
	// carried finds a live worker that carries an order id. It is called with mu held
	// (the lock order is orders, then registry).
	carried func(orderID string) (wire.Worker, bool)
	results *counterVec

	waiting atomic.Int64 // long-polls waiting right now (tests watch it)

	mu      sync.Mutex
	orders  map[string]*orderRec
	open    int // orders not ended
	seq     uint64
	version uint64 // bumped by every change; a long-poll with since=V waits for a later one
	changed chan struct{}
}

func newOrderBook(now func() time.Time, lease, retention time.Duration, maxOpen int,
	carried func(string) (wire.Worker, bool), results *counterVec) *orderBook {
	return &orderBook{
		now:       now,
		lease:     lease,
		retention: retention,
		maxOpen:   maxOpen,
		carried:   carried,
		results:   results,
		orders:    make(map[string]*orderRec),
		changed:   make(chan struct{}),
	}
}

func validOrderID(id string) bool {
	return id != "" && len(id) <= maxOrderIDLen && tokenPattern.MatchString(id)
}

// broadcast wakes every long-poll. Caller holds b.mu.
func (b *orderBook) broadcast() {
	b.version++
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *orderBook) count(result string) { b.results.WithLabelValues(result).Inc() }

func errUnknownOrder(id string) error {
	return wire.NewError(http.StatusNotFound, codeUnknownOrder,
		"no spawn order %q here (a restarted Queen forgets its orders: post it again)", id)
}

func errOrderEnded(o wire.SpawnOrder) error {
	return wire.NewError(http.StatusConflict, wire.CodeOrderEnded, "spawn order %q has ended (%s)", o.OrderID, describeEnd(o))
}

func errOrderTaken(o wire.SpawnOrder, hive string) error {
	switch {
	case o.State == wire.OrderTaken && o.TakenBy == hive:
		return wire.NewError(http.StatusConflict, wire.CodeOrderTaken,
			"spawn order %q is taken by another hive named %q (two hives share the name: give each its own id)", o.OrderID, hive)
	case o.State == wire.OrderTaken:
		return wire.NewError(http.StatusConflict, wire.CodeOrderTaken, "spawn order %q is taken by hive %q", o.OrderID, o.TakenBy)
	case o.Hive != "" && o.Hive != hive:
		return wire.NewError(http.StatusConflict, wire.CodeOrderTaken, "spawn order %q is for hive %q only", o.OrderID, o.Hive)
	default:
		return wire.NewError(http.StatusConflict, wire.CodeOrderTaken,
			"hive %q does not hold spawn order %q (it is pending: its lease ran out): claim it first", hive, o.OrderID)
	}
}

func describeEnd(o wire.SpawnOrder) string {
	if o.State == wire.OrderDone {
		return "done: worker " + o.WorkerID
	}
	return "failed: " + o.Error
}

func errTooManyOrders(limit int) error {
	return wire.NewError(http.StatusServiceUnavailable, wire.CodeBusy,
		"this Queen already holds its limit of %d open spawn orders: cancel some (DELETE %s/{id}) or wait for hives to take them", limit, wire.PathSpawnOrders)
}

// create adds a pending order. req is validated.
func (b *orderBook) create(req wire.SpawnOrderRequest) (wire.SpawnOrder, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if rec := b.orders[req.OrderID]; req.OrderID != "" && rec != nil {
		o := rec.o
		if o.Model != req.Model || o.WorkerType != req.WorkerType || o.Hive != req.Hive || o.CtxSize != req.CtxSize {
			return wire.SpawnOrder{}, wire.NewError(http.StatusConflict, wire.CodeOrderConflict,
				"order_id %q is already the id of another order: pick a new id", req.OrderID)
		}
		return o, nil // a retry of the same order
	}
	if b.open >= b.maxOpen {
		return wire.SpawnOrder{}, errTooManyOrders(b.maxOpen)
	}
	if len(b.orders) >= 2*b.maxOpen {
		b.evictOldestEnded() // ended orders never crowd out new ones
	}
	id := req.OrderID
	for id == "" || b.orders[id] != nil { // 96 random bits: never again, but cheap to be sure
		id = wire.NewOrderID()
	}
	b.seq++
	rec := &orderRec{seq: b.seq, o: wire.SpawnOrder{
		OrderID:    id,
		Model:      req.Model,
		WorkerType: req.WorkerType,
		Hive:       req.Hive,
		CtxSize:    req.CtxSize,
		State:      wire.OrderPending,
		CreatedAt:  now,
		UpdatedAt:  now,
	}}
	b.orders[id] = rec
	b.open++
	b.count(resultCreated)
	if req.OrderID != "" {
		// Placed again after a restart of this Queen forgot it: the worker started for it
		// the first time has registered here already, and it is the order's one worker.
		if w, ok := b.carried(id); ok && w.Model == req.Model {
			rec.o.TakenBy = w.SpawnedBy
			b.end(rec, wire.OrderDone, w.WorkerID, "", now)
			b.count(resultDone)
			return rec.o, nil
		}
	}
	b.broadcast()
	return rec.o, nil
}

// evictOldestEnded drops the ended order that ended first. Caller holds b.mu.
func (b *orderBook) evictOldestEnded() {
	var oldest *orderRec
	for _, rec := range b.orders {
		if rec.o.Ended() && (oldest == nil || rec.endedAt.Before(oldest.endedAt)) {
			oldest = rec
		}
	}
	if oldest != nil {
		delete(b.orders, oldest.o.OrderID)
	}
}

// watch returns order id as it stands and a channel closed by the book's next change.
func (b *orderBook) watch(id string) (wire.SpawnOrder, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	if !ok {
		return wire.SpawnOrder{}, false, b.changed
	}
	return rec.o, true, b.changed
}

func (b *orderBook) get(id string) (wire.SpawnOrder, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	if !ok {
		return wire.SpawnOrder{}, false
	}
	return rec.o, true
}

// orderFilter selects orders for a listing: by state, and with hive set the pending
// orders that hive may take (untargeted or targeted at it).
type orderFilter struct {
	state wire.SpawnOrderState
	hive  string
	// since, when set, makes a long-poll wait for a change after that book version
	// rather than for a matching order: a hive that declined the pending orders (it
	// lacks their model) waits for something new instead of being answered at once.
	since    uint64
	hasSince bool
}

func (f orderFilter) match(o wire.SpawnOrder) bool {
	if f.state != "" && o.State != f.state {
		return false
	}
	if f.hive != "" && (o.State != wire.OrderPending || (o.Hive != "" && o.Hive != f.hive)) {
		return false
	}
	return true
}

// list returns the matching orders in creation order, the book's version, and the
// channel that is closed on the book's next change.
func (b *orderBook) list(f orderFilter) ([]wire.SpawnOrder, uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	recs := make([]*orderRec, 0, 16)
	for _, rec := range b.orders {
		if f.match(rec.o) {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(a, c *orderRec) int {
		switch {
		case a.seq < c.seq:
			return -1
		case a.seq > c.seq:
			return 1
		}
		return 0
	})
	out := make([]wire.SpawnOrder, len(recs))
	for i, rec := range recs {
		out[i] = rec.o
	}
	return out, b.version, b.changed
}

// wait answers a long-poll. Without since: the matching orders as soon as there are any.
// With since: the matching orders once the book has changed after that version. Either
// way, what there is once d passes, ctx ends or the Queen stops.
func (b *orderBook) wait(ctx, queen context.Context, f orderFilter, d time.Duration) ([]wire.SpawnOrder, uint64) {
	ready := func(out []wire.SpawnOrder, version uint64) bool {
		if f.hasSince {
			// Any other version is news: a larger one is a change since, and a smaller
			// one means this Queen restarted and counts from 0 again.
			return version != f.since
		}
		return len(out) > 0
	}
	out, version, changed := b.list(f)
	if ready(out, version) || d <= 0 {
		return out, version
	}
	b.waiting.Add(1)
	defer b.waiting.Add(-1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			return out, version
		case <-ctx.Done():
			return out, version
		case <-queen.Done():
			return out, version
		}
		if out, version, changed = b.list(f); ready(out, version) {
			return out, version
		}
	}
}

// cancel ends a pending order (state failed, error cancelledError). Cancelling a
// cancelled order again is fine; a taken or otherwise ended one is a conflict.
func (b *orderBook) cancel(id string) (wire.SpawnOrder, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	switch {
	case !ok:
		return wire.SpawnOrder{}, errUnknownOrder(id)
	case rec.cancelled:
		return rec.o, nil
	case rec.o.Ended():
		return wire.SpawnOrder{}, errOrderEnded(rec.o)
	case rec.o.State == wire.OrderTaken:
		return wire.SpawnOrder{}, wire.NewError(http.StatusConflict, wire.CodeOrderTaken,
			"spawn order %q is taken by hive %q: it can no longer be cancelled (stop its worker once it runs)", id, rec.o.TakenBy)
	}
	rec.cancelled = true
	b.end(rec, wire.OrderFailed, "", cancelledError, now)
	b.count(resultCancelled)
	return rec.o, nil
}

// end moves rec to done or failed. Caller holds b.mu.
func (b *orderBook) end(rec *orderRec, state wire.SpawnOrderState, workerID, errText string, now time.Time) {
	rec.o.State = state
	rec.o.WorkerID = workerID
	rec.o.Error = errText
	rec.o.UpdatedAt = now
	rec.leaseUntil = time.Time{}
	rec.endedAt = now
	b.open--
	b.broadcast()
}

// claim gives a pending order to the hive claiming it, or renews the lease of the hive
// holding it (same name and token). The answer carries the lease's length.
func (b *orderBook) claim(id string, c wire.SpawnClaim) (wire.SpawnOrder, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	switch {
	case !ok:
		return wire.SpawnOrder{}, errUnknownOrder(id)
	case rec.o.Ended():
		return wire.SpawnOrder{}, errOrderEnded(rec.o)
	case rec.o.State == wire.OrderTaken && rec.o.TakenBy == c.Hive && rec.token == c.Token:
		rec.leaseUntil = now.Add(b.lease) // a renewal: not a change anyone waits for
		return b.withLease(rec.o), nil
	case rec.o.State == wire.OrderTaken, rec.o.Hive != "" && rec.o.Hive != c.Hive:
		return wire.SpawnOrder{}, errOrderTaken(rec.o, c.Hive)
	}
	rec.o.State = wire.OrderTaken
	rec.o.TakenBy = c.Hive
	rec.o.UpdatedAt = now
	rec.leaseUntil = now.Add(b.lease)
	rec.token = c.Token
	b.count(resultTaken)
	b.broadcast()
	return b.withLease(rec.o), nil
}

func (b *orderBook) withLease(o wire.SpawnOrder) wire.SpawnOrder {
	o.LeaseMS = b.lease.Milliseconds()
	return o
}

// result records a hive's outcome: res.WorkerID → done, res.Error → failed. Only the
// hive holding the order reports; a pending order (its lease ran out) may still be
// reported done, since its worker runs. Reporting the same outcome again is fine.
func (b *orderBook) result(id string, res wire.SpawnResult) (wire.SpawnOrder, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	if !ok {
		return wire.SpawnOrder{}, errUnknownOrder(id)
	}
	o := rec.o
	if o.Ended() {
		sameDone := res.WorkerID != "" && o.State == wire.OrderDone && o.WorkerID == res.WorkerID
		sameFail := res.Error != "" && o.State == wire.OrderFailed && !rec.cancelled && o.TakenBy == res.Hive
		if sameDone || sameFail {
			return o, nil // a repeated report (a retry after a lost answer)
		}
		return wire.SpawnOrder{}, errOrderEnded(o)
	}
	held := o.State == wire.OrderTaken && o.TakenBy == res.Hive && rec.token == res.Token
	lapsed := o.State == wire.OrderPending && res.WorkerID != "" && (o.Hive == "" || o.Hive == res.Hive)
	if !held && !lapsed {
		return wire.SpawnOrder{}, errOrderTaken(o, res.Hive)
	}
	rec.o.TakenBy = res.Hive
	if res.WorkerID != "" {
		b.end(rec, wire.OrderDone, res.WorkerID, "", now)
		b.count(resultDone)
	} else {
		b.end(rec, wire.OrderFailed, "", res.Error, now)
		rec.o.ErrorCode = res.ErrorCode
		b.count(resultFailed)
	}
	return rec.o, nil
}

// completeByWorker marks an order done because a worker registered with its id, whoever
// holds it. An unknown or ended order is left alone.
func (b *orderBook) completeByWorker(id, workerID, spawnedBy string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	rec, ok := b.orders[id]
	if !ok || rec.o.Ended() {
		return
	}
	if rec.o.TakenBy == "" {
		rec.o.TakenBy = spawnedBy
	}
	b.end(rec, wire.OrderDone, workerID, "", now)
	b.count(resultDone)
}

// sweep sends taken orders whose lease ran out back to pending (or to done when a live
// worker carries them) and drops ended orders past retention.
func (b *orderBook) sweep() {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	changed := false
	for id, rec := range b.orders {
		switch {
		case rec.o.Ended():
			if now.Sub(rec.endedAt) >= b.retention {
				delete(b.orders, id)
			}
		case rec.o.State == wire.OrderTaken && !now.Before(rec.leaseUntil):
			if w, ok := b.carried(id); ok {
				b.end(rec, wire.OrderDone, w.WorkerID, "", now)
				b.count(resultDone)
				continue
			}
			rec.o.State = wire.OrderPending
			rec.o.TakenBy = ""
			rec.o.UpdatedAt = now
			rec.leaseUntil = time.Time{}
			b.count(resultExpired)
			changed = true
		}
	}
	if changed {
		b.broadcast()
	}
}
