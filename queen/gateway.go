package queen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// maxProxyBody bounds a routed request's body: a chat with a few thousand tokens of
// context is far below it.
const maxProxyBody = 8 << 20

// HeaderWorker names, on a routed answer, the worker that served it.
const HeaderWorker = "X-Beekeeper-Worker"

// gateway routes OpenAI-compatible requests to online workers and streams their answers.
type gateway struct {
	q      *Queen
	client *http.Client
	bufs   sync.Pool
}

func newGateway(q *Queen, dial func(context.Context, string, string) (net.Conn, error)) *gateway {
	return &gateway{
		q: q,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // workers are reached directly
				DialContext:         dial,
				MaxIdleConns:        256,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				DisableCompression:  true, // pass bytes through as the worker sent them
			},
			// No overall timeout: a stream lasts as long as generation does; the client's
			// context bounds it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		bufs: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
}

// handleModels lists every model a request can name: served by an online worker
// (status loaded, owned_by "beekeeper"), being loaded for held requests (loading), or
// loadable on request by some hive (loadable, owned_by the first hive that has it).
func (g *gateway) handleModels(w http.ResponseWriter, r *http.Request) error {
	wire.WriteJSON(w, http.StatusOK, wire.ModelList{Object: "list", Data: g.q.Models()})
	return nil
}

// Models is what GET /v1/models lists, sorted by name: each model once, with its status
// (wire.ModelLoaded, ModelLoading or ModelLoadable).
func (q *Queen) Models() []wire.Model {
	out := q.reg.onlineModels()
	seen := map[string]bool{}
	for i := range out {
		out[i].Status = wire.ModelLoaded
		seen[out[i].ID] = true
	}
	loading := q.loadingModels()
	for _, h := range q.hives.list() {
		for _, m := range h.Models {
			if seen[m.Name] {
				continue
			}
			seen[m.Name] = true
			status := wire.ModelLoadable
			if loading[m.Name] {
				status = wire.ModelLoading
			}
			out = append(out, wire.Model{ID: m.Name, Object: "model", Created: h.ReportedAt.Unix(), OwnedBy: h.Hive, Status: status})
		}
	}
	slices.SortFunc(out, func(a, b wire.Model) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// handleProxy routes a chat or plain completion by its "model" to the least busy online
// worker serving it. A worker that cannot be reached is marked and, as nothing has been
// written yet, the request is tried once more on another worker. A model no online
// worker serves but some hive can start is loaded first (load.go).
func (g *gateway) handleProxy(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	body, err := readBody(r, w, maxProxyBody)
	if err != nil {
		return err
	}
	var m struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := decodeLenient(body, &m); err != nil {
		return err
	}
	if m.Model == "" {
		return invalidField("model", "is required: one of the names GET %s lists", wire.PathModels)
	}
	hold := &holder{w: w, rc: http.NewResponseController(w), stream: m.Stream}
	err = g.route(w, r, m.Model, body, hold, start)
	switch {
	case err == nil || r.Context().Err() != nil:
		return nil // answered, or the client left: nobody to answer
	case hold.started:
		hold.fail(err) // the SSE headers are out: the error goes as an event
		return nil
	}
	return err
}

func (g *gateway) route(w http.ResponseWriter, r *http.Request, model string, body []byte, hold *holder, start time.Time) error {
	// Only models the registry or a hive knows label the metrics: a client-chosen name
	// would mint a new series per request.
	label := clipModel(model)
	var tried []string
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		target, err := g.q.reg.pick(model, tried)
		// Also after a failed attempt: the one worker may have exited as the request
		// reached it (an idle TTL ending), and its model loads again.
		loadable := false
		if err != nil && !hold.held {
			if target, loadable, err = g.loadAndPick(r, model, tried, hold); !loadable {
				target, err = g.q.reg.pick(model, tried) // no hive has it: the registry's answer
			}
		}
		if err != nil {
			if lastErr != nil && !loadable {
				break // the one worker we had failed and no other serves the model
			}
			if apiErr := (*wire.APIError)(nil); errors.As(err, &apiErr) && apiErr.Detail.Code == wire.CodeModelNotFound {
				label = "unknown"
			}
			g.q.metrics.routed.WithLabelValues(label, routeCode(err)).Inc()
			return err
		}
		tried = append(tried, target.id)
		changed := g.q.reg.watch() // before forward: a slot freed meanwhile is not missed
		resp, err := g.forward(r, target, body)
		if err == nil && resp.StatusCode == http.StatusTooManyRequests && hold.held {
			resp.Body.Close()
			g.q.reg.release(target.id, false)
			if g.waitBusy(r, hold, changed) {
				tried = tried[:len(tried)-1]
				attempt-- // waiting out a busy worker is not a failed attempt
				continue
			}
			if target, err = g.q.reg.pick(model, nil); err != nil {
				return err
			}
			tried[len(tried)-1] = target.id
			resp, err = g.forward(r, target, body)
		}
		if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
			refusal := workerRefusal(resp)
			g.q.reg.release(target.id, false)
			if refusal.Detail.Code != wire.CodeBusy {
				// Still loading (the registry's status lags): its answer says when to
				// come back, and another order would load the model twice.
				g.q.metrics.routed.WithLabelValues(label, routeCode(refusal)).Inc()
				return refusal
			}
			// Stopping (an idle TTL ending as the request reached it), having done
			// nothing with the request: it goes to another worker, or to a load
			// placed again.
			g.q.log.Info("worker refused the request as it stops; trying another", "worker", target.id)
			lastErr = refusal
			continue
		}
		if err != nil {
			g.q.reg.release(target.id, r.Context().Err() == nil)
			if r.Context().Err() != nil {
				return nil // the client left; nobody to answer
			}
			g.q.log.Warn("worker unreachable, marked", "worker", target.id, "err", err)
			lastErr = err
			continue
		}
		failed := g.stream(w, resp, target.id, hold.started)
		resp.Body.Close()
		g.q.reg.release(target.id, failed && r.Context().Err() == nil)
		g.q.metrics.routed.WithLabelValues(label, strconv.Itoa(resp.StatusCode)).Inc()
		g.q.metrics.routeSeconds.WithLabelValues(label).Observe(time.Since(start).Seconds())
		return nil
	}
	if apiErr := (*wire.APIError)(nil); errors.As(lastErr, &apiErr) {
		g.q.metrics.routed.WithLabelValues(label, routeCode(apiErr)).Inc()
		return apiErr // the worker's own refusal says more than "unreachable"
	}
	g.q.metrics.routed.WithLabelValues(label, "unreachable").Inc()
	return fmt.Errorf("%w (%v)", wire.NewError(http.StatusBadGateway, wire.CodeNoWorkerOnline,
		"no worker serving %q could be reached; it was marked and will be retried after its next heartbeat", label), lastErr)
}

// workerRefusal reads a worker's error answer (and closes it), with its Retry-After, as
// the error to pass on if no other worker takes the request.
func workerRefusal(resp *http.Response) *wire.APIError {
	defer resp.Body.Close()
	var body wire.ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxWorkerErrorBody))
	refusal := wire.NewError(resp.StatusCode, "", "the worker refused the request (HTTP %d): send it again", resp.StatusCode)
	if json.Unmarshal(b, &body) == nil && body.Error.Message != "" {
		refusal.Detail = body.Error
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		refusal.RetryAfter = time.Duration(secs) * time.Second
	}
	return refusal
}

// clipModel caps a client-supplied model name wherever the Queen repeats it (answers,
// logs, metric labels) at the longest name a registration accepts.
func clipModel(s string) string {
	if len(s) <= maxModelLen {
		return s
	}
	cut := maxModelLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func routeCode(err error) string {
	var apiErr *wire.APIError
	if errors.As(err, &apiErr) {
		return strconv.Itoa(apiErr.Status)
	}
	return "error"
}

// forward sends the request to the worker, bound to the client's context so a client
// that leaves cancels generation.
func (g *gateway) forward(r *http.Request, t routeTarget, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, t.url+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if accept := r.Header.Get("Accept"); accept != "" {
		req.Header.Set("Accept", accept)
	}
	// The client's own Authorization never goes on: a worker is whoever registered its
	// address, and a client's credentials are not theirs to read. The cluster's token,
	// which the Queen's workers share, goes instead.
	if g.q.cfg.Token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+g.q.cfg.Token)
	}
	return g.client.Do(req)
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer", "Te"}

// stream copies the worker's answer through, flushing each read so every SSE event
// reaches the client as the worker sends it. It reports whether the worker failed
// mid-answer. With the SSE headers already sent (a request held while its model
// loaded), a worker's error answer goes as one SSE data event.
func (g *gateway) stream(w http.ResponseWriter, resp *http.Response, workerID string, headersSent bool) (failed bool) {
	rc := http.NewResponseController(w)
	if headersSent && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxWorkerErrorBody))
		_, _ = fmt.Fprintf(w, "data: %s\n\n", bytes.TrimSpace(b))
		_ = rc.Flush()
		return false
	}
	if !headersSent {
		h := w.Header()
		for k, vs := range resp.Header {
			if !slices.Contains(hopHeaders, k) {
				h[k] = vs
			}
		}
		h.Set(HeaderWorker, workerID)
		w.WriteHeader(resp.StatusCode)
	} else {
		// A held stream's headers went out before a worker was known: name it in an
		// SSE comment instead (clients skip comments).
		_, _ = fmt.Fprintf(w, ": worker %s\n\n", workerID)
	}
	_ = rc.Flush()

	bp := g.bufs.Get().(*[]byte)
	defer g.bufs.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false // the client left; the deferred close cancels upstream
			}
			if ferr := rc.Flush(); ferr != nil {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			g.q.log.Warn("worker failed mid-answer", "worker", workerID, "err", err)
			return true
		}
	}
}

// routeTarget is the worker a request goes to.
type routeTarget struct {
	id, url string
}

// pick chooses the least busy online worker serving model, skipping the excluded ids;
// a worker the gateway recently failed to reach comes last. It counts the request as
// in flight until release. 404 when nobody serves the model, 503 when none is online.
func (r *registry) pick(model string, exclude []string) (routeTarget, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *record
	bestLoad, known := 0, false
	for _, rec := range r.workers {
		if !servesModel(rec, model) {
			continue
		}
		known = true
		if rec.w.State != wire.StateOnline || rec.w.Status == wire.StatusLoading || slices.Contains(exclude, rec.w.WorkerID) {
			continue
		}
		// The heartbeat's count includes requests this Queen routed; take the larger.
		load := max(rec.inflight, rec.w.ActiveRequests)
		if !rec.failedAt.IsZero() {
			load += 1 << 20
		}
		if best == nil || load < bestLoad {
			best, bestLoad = rec, load
		}
	}
	switch {
	case best != nil:
		best.inflight++
		return routeTarget{id: best.w.WorkerID, url: best.w.URL}, nil
	case known:
		return routeTarget{}, wire.NewError(http.StatusServiceUnavailable, wire.CodeNoWorkerOnline,
			"no worker serving %q is online right now: wait for one to heartbeat, or spawn one", clipModel(model))
	default:
		return routeTarget{}, wire.NewError(http.StatusNotFound, wire.CodeModelNotFound,
			"no worker serves model %q: spawn one, or pick a model GET %s lists", clipModel(model), wire.PathModels)
	}
}

// release ends a routed request; failed marks the worker so the next request goes
// elsewhere until it heartbeats again.
func (r *registry) release(id string, failed bool) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.workers[id]
	if !ok {
		return
	}
	if rec.inflight > 0 {
		rec.inflight--
	}
	r.wake() // a slot is free: requests waiting out a busy worker try again
	if failed {
		rec.failedAt = now
	}
}

func servesModel(rec *record, model string) bool {
	return rec.w.Model == model || rec.w.Capabilities != nil && rec.w.Capabilities.Model == model
}

// onlineModels lists the distinct models online workers serve, sorted by name.
func (r *registry) onlineModels() []wire.Model {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]wire.Model{}
	for _, rec := range r.workers {
		if rec.w.State != wire.StateOnline {
			continue
		}
		m, ok := seen[rec.w.Model]
		created := rec.w.RegisteredAt.Unix()
		if !ok || created < m.Created {
			seen[rec.w.Model] = wire.Model{ID: rec.w.Model, Object: "model", Created: created, OwnedBy: "beekeeper"}
		}
	}
	out := make([]wire.Model, 0, len(seen))
	for _, m := range seen {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b wire.Model) int { return strings.Compare(a.ID, b.ID) })
	return out
}
