package queen

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// sseKeepAlive is how often an idle event stream gets a comment line, so proxies and
// clients can tell a quiet Queen from a dead connection.
const sseKeepAlive = 15 * time.Second

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes is the Queen's whole HTTP surface.
func (q *Queen) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h handlerFunc) { mux.Handle(pattern, q.adapt(h)) }

	handle("GET "+wire.PathHealth, q.handleHealth)
	handle("POST "+wire.PathRegisterWorker, q.handleRegister)
	handle("POST "+wire.PathHeartbeat, q.handleHeartbeat)
	handle("GET "+wire.PathWorkers, q.handleWorkers)
	handle("GET "+wire.PathWorkers+"/{id}", q.handleWorker)
	handle("DELETE "+wire.PathWorkers+"/{id}", q.handleDeleteWorker)
	handle("GET "+wire.PathEvents, q.handleEvents)
	handle("POST "+wire.PathSpawnOrders, q.handleOrderCreate)
	handle("GET "+wire.PathSpawnOrders, q.handleOrders)
	handle("GET "+wire.PathSpawnOrders+"/{id}", q.handleOrder)
	handle("DELETE "+wire.PathSpawnOrders+"/{id}", q.handleOrderCancel)
	handle("POST "+wire.PathSpawnOrders+"/{id}/claim", q.handleOrderClaim)
	handle("POST "+wire.PathSpawnOrders+"/{id}/result", q.handleOrderResult)
	handle("POST "+wire.PathHives, q.handleHiveReport)
	handle("GET "+wire.PathHives, q.handleHives)
	handle("GET "+wire.PathModels, q.gateway.handleModels)
	handle("POST "+wire.PathChat, q.gateway.handleProxy)
	handle("POST "+wire.PathCompletions, q.gateway.handleProxy)
	handle("POST "+wire.PathEmbeddings, q.gateway.handleProxy)
	mux.Handle("GET "+wire.PathMetrics, q.metrics.handler())
	handle("/", func(w http.ResponseWriter, r *http.Request) error {
		return wire.NewError(http.StatusNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	// Host and Origin first (a rebound or cross-site request learns nothing, not even
	// whether a token is needed), then the token.
	return q.guard.Handler(q.requireToken(mux))
}

// adapt renders a handler's error: the public message to the client, the cause of a 5xx
// to the log.
func (q *Queen) adapt(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var apiErr *wire.APIError
		if !errors.As(err, &apiErr) || apiErr.Status >= 500 {
			q.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		wire.WriteError(w, err)
	})
}

// requireToken checks the bearer token on everything but /health.
func (q *Queen) requireToken(next http.Handler) http.Handler {
	if q.cfg.Token == "" {
		return next
	}
	want := []byte(q.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathHealth {
			next.ServeHTTP(w, r)
			return
		}
		got, _ := wire.BearerToken(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="beekeeper-queen"`)
			wire.WriteError(w, wire.NewError(http.StatusUnauthorized, wire.CodeUnauthorized,
				"missing or wrong bearer token: send Authorization: Bearer <the Queen's --token>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (q *Queen) handleHealth(w http.ResponseWriter, r *http.Request) error {
	wire.WriteJSON(w, http.StatusOK, wire.QueenHealth{Status: wire.HealthOK, Version: wire.Version})
	return nil
}

func errConflict(id, holder string) error {
	return wire.NewError(http.StatusConflict, wire.CodeWorkerConflict,
		"worker_id %q is held by the live worker at %s: give this worker another id, or stop that one first", id, holder)
}

func (q *Queen) handleRegister(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, w, wire.MaxRegistrationBody)
	if err == nil {
		var req wire.RegisterRequest
		if req, err = decodeRegister(body); err == nil {
			err = q.register(w, r, req)
		}
	}
	if err != nil {
		q.metrics.registrations.WithLabelValues("rejected").Inc()
	}
	return err
}

func (q *Queen) register(w http.ResponseWriter, r *http.Request, req wire.RegisterRequest) error {
	if err := q.policy.checkHost(req.Hostname); err != nil {
		return invalidField("hostname", "%v", err)
	}
	res, err := q.reg.register(req, q.queenURLFor(r))
	if err != nil {
		return err
	}
	q.metrics.registrations.WithLabelValues("ok").Inc()
	if req.SpawnOrderID != "" {
		// The worker runs: its order is done, whoever holds it (docs/protocol.md §4.7).
		q.orders.completeByWorker(req.SpawnOrderID, req.WorkerID, req.SpawnedBy)
	}
	if res.fetch {
		q.caps.enqueue(res.rec)
	}
	// docs/protocol.md §2: the answer says "registered" even when an online worker re-registers
	// (it stays online in the registry and GET /v1/workers).
	wire.WriteJSON(w, http.StatusOK, wire.RegisterResponse{
		WorkerID:            res.worker.WorkerID,
		State:               wire.StateRegistered,
		HeartbeatIntervalMS: q.cfg.HeartbeatInterval.Milliseconds(),
	})
	return nil
}

// queenURLFor is the queen_url handed to a worker: the advertised URL, else the address
// the registering spawner used to reach this Queen.
func (q *Queen) queenURLFor(r *http.Request) string {
	if q.cfg.AdvertiseURL != "" || r.Host == "" {
		return q.URL()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (q *Queen) handleHeartbeat(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, w, wire.MaxRegistrationBody)
	if err != nil {
		return err
	}
	hb, err := decodeHeartbeat(body)
	if err != nil {
		return err
	}
	if err := q.reg.heartbeat(hb); err != nil {
		result := "unknown"
		if apiErr := (*wire.APIError)(nil); errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict {
			result = "refused"
		}
		q.metrics.heartbeats.WithLabelValues(result).Inc()
		return err
	}
	q.metrics.heartbeats.WithLabelValues("ok").Inc()
	wire.WriteJSON(w, http.StatusOK, wire.HeartbeatResponse{HeartbeatIntervalMS: q.cfg.HeartbeatInterval.Milliseconds()})
	return nil
}

func (q *Queen) handleWorkers(w http.ResponseWriter, r *http.Request) error {
	wire.WriteJSON(w, http.StatusOK, wire.WorkerList{Workers: q.reg.list()})
	return nil
}

func errHeartbeatUnknown(id string) error {
	return wire.NewError(http.StatusNotFound, wire.CodeUnknownWorker,
		"worker %q is not registered here: register it at %s", id, wire.PathRegisterWorker)
}

func errUnknownWorker(id string) error {
	return wire.NewError(http.StatusNotFound, wire.CodeUnknownWorker, "no worker %q is registered here", id)
}

func (q *Queen) handleWorker(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	wk, ok := q.reg.get(id)
	if !ok {
		return errUnknownWorker(id)
	}
	wire.WriteJSON(w, http.StatusOK, wk)
	return nil
}

func (q *Queen) handleDeleteWorker(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	wk, err := q.reg.remove(id, r.Header.Get(wire.HeaderWorkerKey))
	if err != nil {
		return err
	}
	wire.WriteJSON(w, http.StatusOK, wk)
	return nil
}

// handleEvents streams registry changes as Server-Sent Events, starting with one
// snapshot event per known worker so a UI never needs to poll.
func (q *Queen) handleEvents(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	snapshot, events, cancel := q.reg.subscribe()
	defer cancel()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	now := q.cfg.Now()
	for _, wk := range snapshot {
		if err := writeEvent(w, wire.Event{Type: wire.EventSnapshot, Worker: wk, At: now}); err != nil {
			return nil // the client left
		}
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-q.base.Done():
			return nil
		case <-keepAlive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
		case ev, ok := <-events:
			if !ok {
				// Dropped for falling behind (or the Queen stopped): end the stream so
				// the client reconnects and gets a fresh snapshot.
				q.log.Debug("event subscriber dropped", "remote", r.RemoteAddr)
				return nil
			}
			if err := writeEvent(w, ev); err != nil {
				return nil
			}
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

func writeEvent(w http.ResponseWriter, ev wire.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.Grow(len(data) + len(ev.Type) + 16)
	b.WriteString("event: ")
	b.WriteString(ev.Type)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	_, err = io.WriteString(w, b.String())
	return err
}
