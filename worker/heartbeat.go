package worker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Heartbeat timing.
const (
	heartbeatTimeout = 5 * time.Second // one heartbeat or registration call
	leaveTimeout     = 1 * time.Second // the goodbye at shutdown, best effort
	maxAttempts      = 3               // heartbeats in flight at once while the Queen is silent
	retryFraction    = 0.7             // of the interval: the wait between unanswered attempts
	retryMin         = 100 * time.Millisecond
)

// heartbeater keeps the worker's Queen, if any, informed (docs/protocol.md §1, "Heartbeats").
// One goroutine (run) owns the sending; adopt and ready only poke it.
type heartbeater struct {
	w      *Worker
	client *http.Client

	mu         sync.Mutex
	url        string        // the Queen; "" = Queenless
	queenToken string        // the token the adopting Queen handed over; "" = the worker's own
	interval   time.Duration // as the Queen last said

	kick    chan struct{} // coalescing: send a heartbeat now
	readyCh chan struct{} // closed once the model is loaded
	once    sync.Once
	// heldWarned: the "id held under another key" warning was logged since the last
	// heartbeat that went through (the retries after it come every 100 ms and more).
	heldWarned atomic.Bool
}

func newHeartbeater(w *Worker) *heartbeater {
	return &heartbeater{
		w: w,
		client: &http.Client{
			Timeout: heartbeatTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a Queen answers itself
			},
		},
		url:      strings.TrimRight(w.cfg.QueenURL, "/"),
		interval: wire.DefaultHeartbeatInterval,
		kick:     make(chan struct{}, 1),
		readyCh:  make(chan struct{}),
	}
}

// checkQueenURL accepts absolute http(s) URLs.
func checkQueenURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL such as http://127.0.0.1:7833", raw)
	}
	return nil
}

func (h *heartbeater) queenURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.url
}

// errAdoptRefused answers an adoption the worker may not trust.
func errAdoptRefused(why string) error {
	return wire.NewError(http.StatusForbidden, wire.CodeForbidden,
		"this worker does not take a Queen on that request's word (%s): send the worker's token (its $%s) or its identity key (%s), or send the request from the named Queen's own address",
		why, wire.EnvAPIToken, wire.HeaderWorkerKey)
}

// mayAdopt decides whether r may make queenURL the worker's Queen (docs/protocol.md §5, "adoption
// needs trust"): a request that passed the token check of a worker with a token, or one
// carrying the worker's identity key, may; otherwise the request must come from an
// address of the Queen it names, and the worker must follow no Queen yet or be handed
// over by its current Queen (a request from that Queen's address).
func (h *heartbeater) mayAdopt(ctx context.Context, r *http.Request, queenURL string) error {
	if h.w.cfg.APIToken != "" {
		return nil // handle() checked the token
	}
	if key := r.Header.Get(wire.HeaderWorkerKey); key != "" {
		if subtle.ConstantTimeCompare([]byte(key), []byte(h.w.cfg.WorkerKey)) == 1 {
			return nil
		}
		return errAdoptRefused("the identity key is not this worker's")
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return errAdoptRefused("no client address")
	}
	from := ap.Addr().Unmap()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if !urlResolvesTo(ctx, queenURL, from) {
		return errAdoptRefused(fmt.Sprintf("it comes from %s, not from the Queen it names", from))
	}
	if cur := h.queenURL(); cur != "" && !urlResolvesTo(ctx, cur, from) {
		return errAdoptRefused(fmt.Sprintf("the worker follows %s, and the request does not come from there", cur))
	}
	return nil
}

// urlResolvesTo reports whether the host of rawURL is, or resolves to, ip.
func urlResolvesTo(ctx context.Context, rawURL string, ip netip.Addr) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap() == ip
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.Unmap() == ip {
			return true
		}
	}
	return false
}

// handleAdopt is POST /adopt: the worker makes the named Queen its own when it may trust
// the request (mayAdopt) and answers its capabilities. It replaces GET
// /capabilities?queen_url=, which an <img> tag on any web page could send.
func (w *Worker) handleAdopt(rw http.ResponseWriter, r *http.Request) error {
	var req wire.AdoptRequest
	if err := decodeBody(rw, r, &req); err != nil {
		return err
	}
	if err := checkQueenURL(req.QueenURL); err != nil {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "queen_url: %v", err)
	}
	if err := w.heartbeats.mayAdopt(r.Context(), r, req.QueenURL); err != nil {
		w.log.Warn("adoption refused", "queen_url", req.QueenURL, "remote", r.RemoteAddr)
		return err
	}
	w.heartbeats.adopt(req.QueenURL, req.QueenToken)
	wire.WriteJSON(rw, http.StatusOK, w.capabilities())
	return nil
}

// adopt makes raw the worker's Queen. The Queen hears from the worker at once, even when
// it is the same Queen: it fetches /capabilities right after a registration, so a prompt
// heartbeat turns the worker online without waiting for the next interval. A Queen the
// worker moves away from is not told: a different URL may well name the same Queen
// (localhost vs 127.0.0.1, a TLS proxy), which would then delete the worker it just
// adopted; a Queen really left ages the record out (docs/protocol.md §1 asks nothing more).
func (h *heartbeater) adopt(raw, token string) {
	raw = strings.TrimRight(raw, "/")
	h.mu.Lock()
	old := h.url
	h.url = raw
	h.queenToken = token // the new Queen's, or none: never one Queen's token to another
	h.mu.Unlock()
	if old != raw {
		h.w.log.Info("queen adopted", "queen_url", raw, "previous", old)
	}
	h.poke()
}

func (h *heartbeater) ready() { h.once.Do(func() { close(h.readyCh) }) }

func (h *heartbeater) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run sends heartbeats until ctx ends: the first as soon as the model is ready, then at
// the Queen's interval.
//
// A heartbeat unanswered after one interval does not hold the next back: a link cut
// silently (a cable, a suspended laptop, a firewall dropping packets) leaves it waiting
// for TCP's retransmissions, which back off to seconds. So a new attempt, on a new
// connection, goes out every retryFraction of the interval while none succeeds (at most
// maxAttempts in flight, the oldest given up for a new one), and the first packet sent
// after the link heals reaches the Queen within that fraction: the worker is online
// again within one interval of the heal. A slow Queen is not failed by this: its
// answers still count, whichever attempt they belong to.
func (h *heartbeater) run(ctx context.Context) {
	select {
	case <-h.readyCh:
	case <-ctx.Done():
		return
	}
	type result struct {
		n   int
		err error
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	results := make(chan result, maxAttempts)
	attempts := map[int]context.CancelFunc{} // in flight, by number
	oldest, next := 0, 0
	defer func() {
		for _, cancel := range attempts {
			cancel()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	due := time.Now() // when timer fires
	setTimer := func(d time.Duration) { resetTimer(timer, d); due = time.Now().Add(d) }
	failures, refusals := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			cancel, ours := attempts[r.n]
			if !ours {
				continue // given up for a newer attempt
			}
			cancel()
			delete(attempts, r.n)
			switch {
			case ctx.Err() != nil:
				return
			case r.err != nil:
				failures++
				h.failed(failures, r.err)
				// Try again within the retry fraction, not a whole interval from the last
				// attempt. A refusal of the id (held under another key: most often a
				// killed predecessor on this port, whose hive withdraws it in a moment)
				// is retried sooner still, backing off from retryMin.
				wait := retryAfter(h.currentInterval())
				if refused(r.err) {
					refusals++
					wait = min(wait, refusalBackoff(refusals))
				}
				if time.Until(due) > wait {
					setTimer(wait)
				}
			default:
				refusals = 0
				h.heldWarned.Store(false)
				if failures == 0 && len(attempts) == 0 {
					break
				}
				if failures > 0 {
					h.w.log.Info("queen reachable again", "queen_url", h.queenURL())
				}
				failures = 0
				for n, cancel := range attempts {
					cancel() // answered: the older attempts are moot
					delete(attempts, n)
				}
				setTimer(h.currentInterval())
			}
			continue
		case <-timer.C:
		case <-h.kick:
		}
		queen := h.queenURL()
		if queen == "" {
			setTimer(time.Hour) // Queenless: wait for adopt's kick
			continue
		}
		if len(attempts) == maxAttempts { // give up the oldest: it has hung longest
			for ; attempts[oldest] == nil; oldest++ {
			}
			attempts[oldest]()
			delete(attempts, oldest)
			failures++
			h.failed(failures, errors.New("no answer"))
		}
		actx, cancel := context.WithCancel(ctx)
		n := next
		next++
		attempts[n] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := h.beat(actx, queen)
			select {
			case results <- result{n, err}:
			case <-ctx.Done():
			}
		}()
		// The next beat at the interval; sooner while the last ones go unanswered. An
		// answer resets the timer to the full interval.
		wait := h.currentInterval()
		if failures > 0 || len(attempts) > 1 {
			wait = retryAfter(wait)
		}
		setTimer(wait)
	}
}

// refused reports whether the Queen refused the worker's id (409 worker_key_mismatch:
// bound to another key) rather than not answering or failing otherwise: a wrong token or
// a Queen short of room keeps the usual pace.
func refused(err error) bool {
	var apiErr *wire.APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict && apiErr.Detail.Code == wire.CodeWorkerKeyMismatch
}

// refusalBackoff is the wait after the n-th refusal in a row: retryMin doubling, ±10%.
func refusalBackoff(n int) time.Duration {
	d := retryMin << min(n-1, 8)
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// failed notes the n-th failure in a row: the first is logged, and idle connections
// are dropped so that the next attempt dials afresh.
func (h *heartbeater) failed(n int, err error) {
	if n == 1 {
		h.w.log.Warn("queen unreachable; serving on and retrying", "queen_url", h.queenURL(), "err", err)
		h.client.CloseIdleConnections()
	}
}

// retryAfter is the wait between attempts while the Queen does not answer: a fraction
// of its interval, never under retryMin, with ±10% jitter so that many workers do not
// hit a returning Queen at once.
func retryAfter(interval time.Duration) time.Duration {
	d := max(time.Duration(float64(interval)*retryFraction), retryMin)
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

func (h *heartbeater) currentInterval() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.interval
}

// resetTimer sets a timer that may have fired and not been read.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// beat sends one heartbeat; a Queen that forgot the worker gets a registration first,
// and so does one that holds the id under another identity key (the id was taken over
// while this worker was unreachable): registering again takes it back as soon as the
// other holder is no longer live.
func (h *heartbeater) beat(ctx context.Context, queen string) error {
	e := h.w.engine.Load()
	hb := wire.Heartbeat{WorkerID: h.w.cfg.WorkerID, Status: wire.StatusReady, WorkerKey: h.w.cfg.WorkerKey}
	if e != nil {
		st := e.Stats()
		hb.ActiveRequests, hb.QueuedRequests, hb.Slots = st.Active, st.Queued, e.Parallel()
		hb.KVCacheTokens, hb.KVCacheCapacity = st.KVTokens, st.KVCapacity
		hb.Device, hb.Runtime = h.w.deviceName(), h.w.offload.backend
		if d := h.w.offload.device; d != nil {
			hb.DeviceFreeBytes = d.FreeBytes
		}
		if hb.ActiveRequests >= hb.Slots {
			hb.Status = wire.StatusBusy
		}
	}
	var resp wire.HeartbeatResponse
	err := h.post(ctx, queen+wire.PathHeartbeat, hb, &resp)
	var apiErr *wire.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound && apiErr.Detail.Code == wire.CodeUnknownWorker ||
		apiErr.Status == http.StatusConflict && apiErr.Detail.Code == wire.CodeWorkerKeyMismatch) {
		if apiErr.Status == http.StatusConflict && !h.heldWarned.Swap(true) {
			h.w.log.Warn("the queen holds this worker id under another identity key; registering again", "queen_url", queen)
		}
		if err := h.register(ctx, queen); err != nil {
			return err
		}
		err = h.post(ctx, queen+wire.PathHeartbeat, hb, &resp)
	}
	if err != nil {
		return err
	}
	h.setInterval(resp.HeartbeatIntervalMS)
	return nil
}

// register sends the payload a spawner would send (docs/protocol.md §1: self-registration).
func (h *heartbeater) register(ctx context.Context, queen string) error {
	cfg := h.w.cfg
	req := wire.RegisterRequest{
		WorkerID:   cfg.WorkerID,
		Hostname:   cfg.AdvertiseHost,
		Port:       cfg.Port,
		WorkerType: cfg.WorkerType,
		Model:      h.w.modelName,
		SpawnedBy:  cfg.SpawnedBy,
		// A worker the hive started for a spawn order completes it by registering, even
		// when the hive went away before it could.
		SpawnOrderID: cfg.SpawnOrder,
		WorkerKey:    cfg.WorkerKey,
	}
	var resp wire.RegisterResponse
	if err := h.post(ctx, queen+wire.PathRegisterWorker, req, &resp); err != nil {
		return fmt.Errorf("self-register: %w", err)
	}
	h.setInterval(resp.HeartbeatIntervalMS)
	h.w.log.Info("self-registered at the queen", "queen_url", queen, "worker_id", cfg.WorkerID)
	return nil
}

func (h *heartbeater) setInterval(ms int64) {
	if ms <= 0 {
		return
	}
	h.mu.Lock()
	h.interval = time.Duration(ms) * time.Millisecond
	h.mu.Unlock()
}

// leave tells the current Queen the worker goes away (best effort, short timeout).
func (h *heartbeater) leave(ctx context.Context) {
	if queen := h.queenURL(); queen != "" {
		h.leaveQueen(ctx, queen)
	}
}

// leaveQueen deregisters the worker at queen (best effort, short timeout).
func (h *heartbeater) leaveQueen(ctx context.Context, queen string) {
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, queen+wire.PathWorkers+"/"+url.PathEscape(h.w.cfg.WorkerID), nil)
	if err != nil {
		return
	}
	h.authorize(req)
	req.Header.Set(wire.HeaderWorkerKey, h.w.cfg.WorkerKey) // only the worker itself may deregister it
	resp, err := h.client.Do(req)
	if err != nil {
		h.w.log.Warn("could not tell the queen that the worker leaves", "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// authorize presents the token the adopting Queen handed over, else the worker's own
// (one token for both, the spawner's case).
func (h *heartbeater) authorize(req *http.Request) {
	h.mu.Lock()
	token := h.queenToken
	h.mu.Unlock()
	if token == "" {
		token = h.w.cfg.APIToken
	}
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
}

// post sends body as JSON and decodes a 2xx answer into out; other answers become an
// *wire.APIError.
func (h *heartbeater) post(ctx context.Context, target string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	h.authorize(req)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxRegistrationBody))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", target, err)
	}
	if resp.StatusCode/100 != 2 {
		return wire.DecodeError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("answer of %s: %w", target, err)
	}
	return nil
}
