package queen

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Load on request (issue 12): a gateway request for a model no online worker serves, but
// that some hive reported it can start, places one spawn order for it (shared by every
// request for that model meanwhile) and is held until the order's worker is online, then
// routed as usual. A streamed request gets its SSE headers at once and ": loading"
// comments while it waits; a failed load answers the held requests with the hive's error
// as soon as the order fails; LoadTimeout bounds the wait.

const (
	// loadKeepAlive is how often a held streamed request gets a ": loading" comment.
	loadKeepAlive = 2 * time.Second
	// loadTimeoutBase and loadBytesPerSecond make the default load timeout: a base plus
	// the time to read the file at a slow disk's pace.
	loadTimeoutBase    = 60 * time.Second
	loadBytesPerSecond = 100 << 20
	// maxWorkerErrorBody bounds what a held stream repeats of a worker's error answer.
	maxWorkerErrorBody = 64 << 10
	// noRoomRetryAfter is the Retry-After of a load refused for want of room.
	noRoomRetryAfter = 5 * time.Second
)

// load is one model being loaded for held requests.
type load struct {
	order   string // the spawn order; "" = a worker is already coming, nothing ordered
	hive    string
	timeout time.Duration
	// graceEnds, when set, fires at the end of the restart grace: nothing was ordered,
	// the hives' workers may still be re-registering.
	graceEnds <-chan time.Time
}

// restartGrace is how long a load must wait, right after this Queen started, for the
// workers the hives report to come back: a restarted Queen knows the hives' models
// (their reports come first) before their running workers have re-registered, and an
// order placed then would start a second worker for a model that is served. It is
// over once the registry holds as many live workers as the hives report, and after
// two heartbeat intervals whatever happens.
func (q *Queen) restartGrace() time.Duration {
	left := time.Until(q.started.Add(2 * q.cfg.HeartbeatInterval))
	if left <= 0 {
		return 0
	}
	reported := 0
	for _, h := range q.hives.list() {
		reported += h.Workers
	}
	counts := q.reg.countByState()
	if counts[wire.StateRegistered]+counts[wire.StateOnline] >= reported {
		return 0
	}
	return left
}

// loads is the one-order-per-model book of the gateway.
type loads struct {
	mu      sync.Mutex
	byModel map[string]load
}

func newLoads() *loads { return &loads{byModel: make(map[string]load)} }

// loadTimeout is Config.LoadTimeout, else a base plus a second per 100 MB of model.
func (q *Queen) loadTimeout(size int64) time.Duration {
	if q.cfg.LoadTimeout > 0 {
		return q.cfg.LoadTimeout
	}
	return loadTimeoutBase + time.Duration(max(size, 0)/loadBytesPerSecond)*time.Second
}

// ensure joins the load of model under way, or starts one: a spawn order targeted at
// the hive offering the model with the most room. ok is false when no hive offers it.
func (q *Queen) ensureLoad(model string) (ld load, ok bool, err error) {
	l := q.loads
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byModel[model]; ok {
		if cur.order == "" && q.reg.comingFor(model) {
			return cur, true, nil
		}
		o, found := q.orders.get(cur.order)
		if found && (!o.Ended() || o.State == wire.OrderDone && q.reg.liveWorker(o.WorkerID)) {
			return cur, true, nil
		}
		delete(l.byModel, model) // failed, or its worker is gone: load again
	}
	offers := q.hives.offers(model)
	if len(offers) == 0 {
		return load{}, false, nil
	}
	best := offers[0]
	ld = load{hive: best.hive, timeout: q.loadTimeout(best.model.SizeBytes)}
	if wait := q.restartGrace(); wait > 0 {
		// Not recorded: the next look (at the latest when the grace ends) decides.
		ld.graceEnds = time.After(wait)
		return ld, true, nil
	}
	if !q.reg.comingFor(model) {
		o, err := q.orders.create(wire.SpawnOrderRequest{Model: model, WorkerType: wire.DefaultWorkerType, Hive: best.hive})
		if err != nil {
			return load{}, true, err
		}
		ld.order = o.OrderID
		q.log.Info("loading a model on request", "model", model, "hive", best.hive, "order", o.OrderID)
	}
	l.byModel[model] = ld
	return ld, true, nil
}

// loadingModels is the set of models whose load (a spawn order not ended) is under way.
func (q *Queen) loadingModels() map[string]bool {
	l := q.loads
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]bool{}
	for model, ld := range l.byModel {
		if ld.order == "" {
			out[model] = true
			continue
		}
		if o, ok := q.orders.get(ld.order); ok && !o.Ended() {
			out[model] = true
		}
	}
	return out
}

// holder answers a request held while its model loads.
type holder struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	stream  bool // the client asked for SSE
	started bool // the SSE headers are out: errors go as an SSE error event
	// held: the request waited for a load; until deadline, a worker's 429 (a freshly
	// loaded worker met by every held request at once) is waited out, not passed on.
	held     bool
	deadline time.Time
}

// begin sends a streamed request's SSE headers and a first comment at once, so the
// client knows the request is in hand while the model loads.
func (h *holder) begin() {
	if !h.stream || h.started {
		return
	}
	hd := h.w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	h.w.WriteHeader(http.StatusOK)
	h.started = true
	h.keepAlive()
}

func (h *holder) keepAlive() {
	if h.started {
		_, _ = io.WriteString(h.w, ": loading\n\n")
		_ = h.rc.Flush()
	}
}

// fail ends a started stream with an OpenAI-style error event (the openai SDKs raise it).
func (h *holder) fail(err error) {
	var apiErr *wire.APIError
	if !errors.As(err, &apiErr) {
		apiErr = wire.NewError(http.StatusInternalServerError, "", "internal error")
	}
	b, _ := json.Marshal(wire.ErrorBody{Error: apiErr.Detail})
	_, _ = fmt.Fprintf(h.w, "data: %s\n\n", b)
	_ = h.rc.Flush()
}

func errLoadFailed(model string, o wire.SpawnOrder) error {
	if o.ErrorCode == wire.CodeNoRoom {
		// Not broken, only full: every worker that could make room is busy. Retry-After
		// tells a client (the OpenAI SDKs honour it) when a slot may have freed.
		err := wire.NewError(http.StatusServiceUnavailable, wire.CodeNoRoom,
			"no room to load model %q on hive %s now: %s", clipModel(model), o.TakenBy, o.Error)
		err.RetryAfter = noRoomRetryAfter
		return err
	}
	return wire.NewError(http.StatusBadGateway, wire.CodeModelLoadFailed,
		"loading model %q on hive %s failed: %s", clipModel(model), o.TakenBy, o.Error)
}

func errLoadTimeout(model, hive string, d time.Duration) error {
	return wire.NewError(http.StatusGatewayTimeout, wire.CodeLoadTimeout,
		"model %q did not load on hive %s within %v: look at the hive's worker log, or raise the Queen's --load-timeout", clipModel(model), hive, d)
}

// loadAndPick holds the request until a worker serving model is online (and picks it,
// counting the request in flight), the load fails, the timeout passes or the client
// goes. ok is false when no hive offers the model. The excluded workers (ones that
// refused the request as they stopped) are not picked.
//
// The load is looked at again after every change: a worker that was coming (or the
// order's worker) may exit before it serves — an idle TTL ending as the request arrives —
// and then the request places a new order rather than waiting for a ghost.
func (g *gateway) loadAndPick(r *http.Request, model string, exclude []string, hold *holder) (t routeTarget, ok bool, err error) {
	ld, ok, err := g.q.ensureLoad(model)
	if !ok || err != nil {
		return routeTarget{}, ok, err
	}
	hold.begin()
	hold.held, hold.deadline = true, time.Now().Add(ld.timeout)
	deadline := time.NewTimer(ld.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(loadKeepAlive)
	defer tick.Stop()
	for first := true; ; first = false {
		regChanged := g.q.reg.watch() // before pick: no change falls between the two
		if t, err := g.q.reg.pick(model, exclude); err == nil {
			return t, true, nil
		}
		if o, found := g.q.orders.get(ld.order); ld.order != "" && found && o.State == wire.OrderFailed {
			return routeTarget{}, true, errLoadFailed(model, o) // before ensureLoad replaces it
		}
		if !first {
			if ld, ok, err = g.q.ensureLoad(model); err != nil {
				return routeTarget{}, true, err
			} else if !ok {
				return routeTarget{}, true, wire.NewError(http.StatusServiceUnavailable, wire.CodeNoWorkerOnline,
					"no hive offers %q any more (its worker stopped while the request waited): send the request again", clipModel(model))
			}
		}
		var orderChanged <-chan struct{}
		if ld.order != "" {
			o, found, ch := g.q.orders.watch(ld.order)
			switch {
			case !found:
				return routeTarget{}, true, wire.NewError(http.StatusServiceUnavailable, wire.CodeNoWorkerOnline,
					"the spawn order loading %q is gone (the Queen dropped it): send the request again", clipModel(model))
			case o.State == wire.OrderFailed:
				return routeTarget{}, true, errLoadFailed(model, o)
			}
			orderChanged = ch
		}
		select {
		case <-regChanged:
		case <-orderChanged:
		case <-ld.graceEnds:
		case <-tick.C:
			hold.keepAlive()
		case <-deadline.C:
			return routeTarget{}, true, errLoadTimeout(model, ld.hive, ld.timeout)
		case <-r.Context().Done():
			return routeTarget{}, true, r.Context().Err()
		case <-g.q.base.Done():
			return routeTarget{}, true, wire.NewError(http.StatusServiceUnavailable, wire.CodeBusy, "the Queen is stopping: send the request again")
		}
	}
}

// waitBusy waits, for a held request whose worker answered 429, until a request ends
// at the Queen's workers or any registry change (a slot may be free), the load deadline
// passes or the client goes; false: pass the 429 on.
func (g *gateway) waitBusy(r *http.Request, hold *holder, changed <-chan struct{}) bool {
	left := time.Until(hold.deadline)
	if !hold.held || left <= 0 {
		return false
	}
	t := time.NewTimer(left)
	defer t.Stop()
	tick := time.NewTicker(loadKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-changed:
			return true
		case <-tick.C:
			hold.keepAlive()
		case <-t.C:
			return false
		case <-r.Context().Done():
			return false
		}
	}
}
