package worker

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// MaxRequestBody bounds a completion request body: far beyond any prompt a context holds.
const MaxRequestBody = 4 << 20

// Backend and Device name what the worker computes on, for /capabilities.
const (
	Backend = "llama.cpp"
	Device  = "cpu"
)

// routes is the worker's whole HTTP surface.
func (w *Worker) routes() http.Handler {
	mux := http.NewServeMux()
	allow := map[string]string{} // path -> the method it takes, for 405 answers
	route := func(method, path string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(method+" "+path, w.handle(path, h))
		allow[path] = method
	}
	mux.Handle(http.MethodGet+" "+wire.PathHealth, http.HandlerFunc(w.handleHealth))
	allow[wire.PathHealth] = http.MethodGet
	route(http.MethodGet, wire.PathCapabilities, w.handleCapabilities)
	route(http.MethodPost, wire.PathAdopt, w.handleAdopt)
	route(http.MethodGet, wire.PathModels, w.handleModels)
	route(http.MethodPost, wire.PathChat, w.handleChat)
	route(http.MethodPost, wire.PathCompletions, w.handleCompletion)
	route(http.MethodPost, wire.PathEmbeddings, w.handleEmbeddings)
	// Prometheus's text format; it needs the token like the rest (docs/worker.md#metrics).
	route(http.MethodGet, wire.PathMetrics, w.metrics.handle)
	// Everything else gets an OpenAI-shaped JSON error (docs/protocol.md §1), not the mux's plain
	// text: "/" matches any method and path the routes above do not.
	mux.Handle("/", w.handle(otherEndpoint, func(rw http.ResponseWriter, r *http.Request) error {
		method, ok := allow[r.URL.Path]
		if !ok {
			return wire.NewError(http.StatusNotFound, "", "no such endpoint: %s %s", r.Method, r.URL.Path)
		}
		if method == http.MethodGet {
			method += ", " + http.MethodHead // a GET pattern serves HEAD too
		}
		rw.Header().Set("Allow", method)
		return wire.NewError(http.StatusMethodNotAllowed, "", "%s takes %s, not %s", r.URL.Path, method, r.Method)
	}))
	// Host and Origin checks before anything, /health included (docs/security.md).
	return w.guard.Handler(mux)
}

// handle adapts a handler that returns an error: the token is checked first, and an error
// becomes one OpenAI-shaped JSON answer (its cause goes to the log when it is internal).
// Every answer is counted in /metrics under endpoint (a route's path) and its status.
func (w *Worker) handle(endpoint string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !w.authorized(r) {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="beekeeper-worker"`)
			wire.WriteError(rw, wire.NewError(http.StatusUnauthorized, wire.CodeUnauthorized,
				"missing or wrong bearer token: send Authorization: Bearer <the worker's token, its $%s>", wire.EnvAPIToken))
			w.metrics.request(endpoint, http.StatusUnauthorized)
			return
		}
		err := h(rw, r)
		w.metrics.request(endpoint, statusOf(err)) // handlers answer 200 unless they return an error
		if err == nil {
			return
		}
		var apiErr *wire.APIError
		if !errors.As(err, &apiErr) {
			w.log.Error("request failed", "path", r.URL.Path, "err", err)
		}
		wire.WriteError(rw, err)
	})
}

func (w *Worker) authorized(r *http.Request) bool {
	if w.cfg.APIToken == "" {
		return true
	}
	got, ok := wire.BearerToken(r.Header.Get("Authorization"))
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(w.cfg.APIToken)) == 1
}

func (w *Worker) handleHealth(rw http.ResponseWriter, _ *http.Request) {
	if w.engine.Load() == nil {
		p := float64(math.Float32frombits(w.progress.Load()))
		wire.WriteJSON(rw, http.StatusServiceUnavailable, wire.Health{Status: wire.HealthLoading, Progress: &p})
		w.metrics.request(wire.PathHealth, http.StatusServiceUnavailable)
		return
	}
	wire.WriteJSON(rw, http.StatusOK, w.health())
	w.metrics.request(wire.PathHealth, http.StatusOK)
}

// handleCapabilities answers the worker's capabilities. A GET changes nothing: an <img>
// tag on any web page can send one, so a queen_url in the query is ignored (POST /adopt
// hands the worker a Queen).
func (w *Worker) handleCapabilities(rw http.ResponseWriter, _ *http.Request) error {
	wire.WriteJSON(rw, http.StatusOK, w.capabilities())
	return nil
}

// capabilities is the worker as GET /capabilities and POST /adopt describe it.
func (w *Worker) capabilities() wire.Capabilities {
	caps := wire.Capabilities{
		WorkerID:      w.cfg.WorkerID,
		WorkerType:    w.cfg.WorkerType,
		Model:         w.modelName,
		ModelPath:     w.cfg.ModelPath,
		Backend:       Backend,
		Device:        Device,
		ContextLength: w.cfg.CtxSize,
		Parallel:      w.cfg.Parallel,
		Version:       wire.Version,
		StartedAt:     w.startedAt,
		QueenURL:      w.heartbeats.queenURL(),
		Vision:        w.cfg.Projector != "",
	}
	if e := w.engine.Load(); e != nil {
		st := e.Stats()
		caps.ContextLength = e.ContextSize()
		caps.Device, caps.Runtime, caps.GPULayers = w.deviceName(), w.offload.backend, e.GPULayers()
		if d := w.offload.device; d != nil {
			caps.DeviceMemory = &wire.DeviceMemory{FreeBytes: d.FreeBytes, TotalBytes: d.TotalBytes}
		}
		caps.Load = &wire.WorkerLoad{SlotsBusy: st.Active, Slots: e.Parallel(), QueuedRequests: st.Queued,
			KVCacheTokens: st.KVTokens, KVCacheCapacity: st.KVCapacity, KVCacheBytes: st.KVBytes,
			PromptTokens: st.PromptTokens, CachedPromptTokens: st.CachedPromptTokens}
	}
	return caps
}

func (w *Worker) handleModels(rw http.ResponseWriter, _ *http.Request) error {
	wire.WriteJSON(rw, http.StatusOK, wire.ModelList{Object: "list", Data: []wire.Model{{
		ID: w.modelName, Object: "model", Created: w.startedAt.Unix(), OwnedBy: "beekeeper",
	}}})
	return nil
}

// ready returns the engine once the model is loaded and checks the requested model name.
func (w *Worker) ready(model string) (*engine.Engine, error) {
	e := w.engine.Load()
	if e == nil {
		return nil, wire.NewError(http.StatusServiceUnavailable, wire.CodeLoading, "the model is still loading: retry when GET /health answers 200")
	}
	if model != "" && model != w.modelName {
		return nil, wire.NewError(http.StatusNotFound, wire.CodeModelNotFound, "model %q is not served here: this worker serves %q", model, w.modelName)
	}
	return e, nil
}

// generate runs one completion and writes it, streamed or whole, in format f.
func (w *Worker) generate(rw http.ResponseWriter, r *http.Request, e *engine.Engine, prompt string, special bool,
	sampling engine.Sampling, params *wire.SamplingParams, f format, calls *toolCalls) error {
	start := time.Now()
	job, err := e.Prepare(prompt, special, sampling)
	if err != nil {
		return prepareError(err)
	}

	// The generation ends when the client goes away or the worker stops.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopWatch := context.AfterFunc(w.stopping, cancel)
	defer stopWatch()

	w.used.touch()
	defer w.used.touch()
	ticket, err := e.Admit(ctx, job)
	if err != nil {
		if errors.Is(err, engine.ErrBusy) {
			rw.Header().Set("Retry-After", "1")
		}
		return admitError(e, err)
	}
	// Until srv.Shutdown closes the listener, requests still arrive after the stop:
	// refuse them rather than answer 200 with no tokens (SIGTERM = stop accepting).
	if w.stopping.Err() != nil {
		ticket.Cancel()
		return errShuttingDown()
	}
	out := newResponder(rw, f, w.modelName, params.Stream, params.StreamOptions != nil && params.StreamOptions.IncludeUsage)
	defer out.close() // before the handler returns: the stream's writer is done with rw
	emit := out.emit
	var held []byte // an answer that may hold a tool call: what is not yet sent of it
	sent := 0       // bytes of held already streamed as content
	if calls != nil {
		emit = func(b []byte) error {
			held = append(held, b...)
			if n := calls.streamable(string(held)); n > sent {
				err := out.emit(held[sent:n])
				sent = n
				return err
			}
			return nil
		}
	}
	clock := w.metrics.clock(start)
	res, genErr := ticket.Run(func(b []byte) error { clock.tick(); return emit(b) })
	clock.done(res)
	if calls != nil && genErr == nil {
		found, content, ok := calls.parse(string(held))
		switch {
		case ok && res.FinishReason == engine.FinishStop:
			if sent == 0 && content != "" {
				genErr = out.emit([]byte(content))
			}
			out.toolCalls(found)
			res.FinishReason = wire.FinishToolCalls
		case sent < len(held):
			genErr = out.emit(held[sent:])
		}
	}
	if errors.Is(genErr, engine.ErrClosed) && !out.started() {
		return errShuttingDown()
	}
	switch {
	case genErr == nil:
	case r.Context().Err() != nil:
		w.log.Info("request", "path", r.URL.Path, "outcome", "client gone", "prompt_tokens", res.PromptTokens,
			"completion_tokens", res.CompletionTokens, "ms", time.Since(start).Milliseconds())
		return nil
	case w.stopping.Err() != nil:
		if !out.started() && res.CompletionTokens == 0 {
			return errShuttingDown() // nothing written and nothing generated: no empty 200
		}
		res.FinishReason = engine.FinishStop // the worker stops: end the answer cleanly
	default:
		if !out.started() {
			return fmt.Errorf("generate: %w", genErr)
		}
		w.log.Error("generation failed mid-stream", "err", genErr)
		res.FinishReason = engine.FinishStop
	}
	out.finish(res)
	w.log.Info("request", "path", r.URL.Path, "stream", params.Stream, "prompt_tokens", res.PromptTokens,
		"completion_tokens", res.CompletionTokens, "finish", res.FinishReason, "ms", time.Since(start).Milliseconds())
	return nil
}

// prepareError turns an error of engine.Prepare into the API's answer.
func prepareError(err error) error {
	var ctxErr *engine.ContextExceededError
	if errors.As(err, &ctxErr) {
		apiErr := wire.ContextExceeded(ctxErr.PromptTokens, ctxErr.ContextSize)
		apiErr.Detail.Message = ctxErr.Error() // names the fix (--ctx-size)
		return apiErr
	}
	return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "%v", err)
}

// admitError turns an error of engine.Admit into the API's answer: 429 when busy (the
// caller sets Retry-After), 503 when the worker stops.
func admitError(e *engine.Engine, err error) error {
	if errors.Is(err, engine.ErrBusy) {
		return wire.NewError(http.StatusTooManyRequests, wire.CodeBusy,
			"all %d slots are busy and %d requests already wait: retry shortly, or start the worker with a larger --parallel", e.Parallel(), e.Queued())
	}
	return errShuttingDown()
}

// checkNoNUL refuses text holding a NUL character: llama.cpp takes C strings, and yzma
// hands it a nil pointer for one, which aborts the whole process.
func checkNoNUL(field, text string) error {
	if strings.IndexByte(text, 0) >= 0 {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField,
			"%s contains a NUL character (\\u0000), which llama.cpp cannot take: remove it", field)
	}
	return nil
}

func errShuttingDown() error {
	return wire.NewError(http.StatusServiceUnavailable, wire.CodeBusy, "the worker is shutting down: retry on another worker")
}

// samplingFrom checks the request's settings and applies the defaults.
func samplingFrom(p *wire.SamplingParams, ctxSize int) (engine.Sampling, error) {
	s := engine.DefaultSampling()
	bad := func(format string, args ...any) (engine.Sampling, error) {
		return s, wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, format, args...)
	}
	if p.Temperature != nil {
		if *p.Temperature < 0 || *p.Temperature > 2 || math.IsNaN(*p.Temperature) {
			return bad("temperature %g is outside 0..2", *p.Temperature)
		}
		s.Temperature = *p.Temperature
	}
	if p.TopP != nil {
		if *p.TopP <= 0 || *p.TopP > 1 || math.IsNaN(*p.TopP) {
			return bad("top_p %g is outside (0, 1]", *p.TopP)
		}
		s.TopP = *p.TopP
	}
	if p.TopK != nil {
		if *p.TopK < 0 {
			return bad("top_k %d is negative (0 turns it off)", *p.TopK)
		}
		s.TopK = *p.TopK
	}
	if p.Seed != nil {
		s.Seed = uint32(*p.Seed)
	}
	maxTokens := p.MaxTokens
	if p.MaxCompletionTokens != nil {
		maxTokens = p.MaxCompletionTokens
	}
	if maxTokens != nil {
		if *maxTokens < 1 || *maxTokens > ctxSize {
			return bad("max_tokens %d is outside 1..%d (the context size)", *maxTokens, ctxSize)
		}
		s.MaxTokens = *maxTokens
	}
	for _, pen := range []struct {
		name   string
		v      *float64
		lo, hi float64
		dst    *float64
	}{
		{"presence_penalty", p.PresencePenalty, -2, 2, &s.PresencePenalty},
		{"frequency_penalty", p.FrequencyPenalty, -2, 2, &s.FrequencyPenalty},
		{"repeat_penalty", p.RepeatPenalty, 0, 10, &s.RepeatPenalty},
	} {
		if pen.v == nil {
			continue
		}
		if *pen.v < pen.lo || *pen.v > pen.hi || math.IsNaN(*pen.v) {
			return bad("%s %g is outside %g..%g", pen.name, *pen.v, pen.lo, pen.hi)
		}
		*pen.dst = *pen.v
	}
	if len(p.Stop) > 4 {
		return bad("stop has %d strings: at most 4", len(p.Stop))
	}
	for i, stop := range p.Stop {
		if err := checkNoNUL(fmt.Sprintf("stop[%d]", i), stop); err != nil {
			return s, err
		}
	}
	s.Stop = append([]string(nil), p.Stop...)
	s.IgnoreEOS = p.IgnoreEOS
	return s, nil
}

// decodeBody reads a JSON body strictly: a bounded size and no unknown trailing data.
func decodeBody(rw http.ResponseWriter, r *http.Request, v any) error {
	// Only JSON: a web page may post text/plain or a form anywhere without asking.
	if err := httpguard.RequireJSON(r); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxRequestBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return wire.NewError(http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge,
				"the request body is over %d bytes", MaxRequestBody)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return wire.NewError(http.StatusRequestTimeout, wire.CodeTimeout,
				"the request body did not arrive within the server's --body-timeout: send it at once")
		}
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "read the request body: %v", err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "the request body is not valid JSON for this endpoint: %v", err)
	}
	return nil
}
