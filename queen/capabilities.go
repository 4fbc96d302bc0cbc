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
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

func (c FetchConfig) withDefaults() FetchConfig {
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Queue <= 0 {
		c.Queue = 10_000
	}
	return c
}

// fetcher fetches a registered worker's /capabilities in the background, so no request
// ever waits on a slow worker. A record has at most one fetch job queued or running (the
// registry's fetching flag), and the job belongs to that record: a record deleted or
// replaced meanwhile ends its job. Jobs wait in a bounded queue and run on at most
// Concurrency goroutines, started on demand and gone when the queue is empty, so a
// registration flood cannot pile up goroutines.
type fetcher struct {
	q      *Queen
	cfg    FetchConfig
	client *http.Client

	mu      sync.Mutex
	jobs    chan *record // the queue; a job is the record to fetch for
	running int          // fetch goroutines alive, at most cfg.Concurrency
	closed  bool         // the Queen stopped: nothing more is queued
}

func newFetcher(q *Queen, cfg FetchConfig, dial func(context.Context, string, string) (net.Conn, error)) *fetcher {
	return &fetcher{
		q:   q,
		cfg: cfg,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // workers are reached directly, never via $HTTP_PROXY
				DialContext:         dial,
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     30 * time.Second,
			},
			Timeout: cfg.Timeout,
			// Only the registered host:port's /capabilities is ever fetched.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		jobs: make(chan *record, cfg.Queue),
	}
}

// enqueue queues the fetch of a newly registered record. A full queue drops it (logged
// and counted): the worker still goes online with its first heartbeat, and its next
// registration queues a fetch again.
func (f *fetcher) enqueue(rec *record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	select {
	case f.jobs <- rec:
	default:
		f.q.reg.fetchDropped(rec)
		f.q.metrics.capFetches.WithLabelValues("dropped").Inc()
		f.q.log.Warn("capabilities fetch dropped: the fetch queue is full", "worker", rec.w.WorkerID, "queue", f.cfg.Queue)
		return
	}
	if f.running < f.cfg.Concurrency {
		f.running++
		f.q.wg.Add(1) // the Queen's lifetime owns the goroutine
		go f.work()
	}
}

// work runs queued jobs until the queue is empty or the Queen stops. The queue is
// checked under f.mu, the lock enqueue holds, so no job is left without a goroutine.
func (f *fetcher) work() {
	defer f.q.wg.Done()
	for {
		f.mu.Lock()
		var rec *record
		if f.q.base.Err() == nil {
			select {
			case rec = <-f.jobs:
			default:
			}
		}
		if rec == nil {
			f.running--
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		f.loop(rec)
	}
}

// stopped refuses later fetches. Taking f.mu also waits out an enqueue in progress, so
// its wg.Add comes before the Queen's wg.Wait.
func (f *fetcher) stopped() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

// idle reports whether no fetch is queued or running.
func (f *fetcher) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running == 0 && len(f.jobs) == 0
}

// loop fetches until the result matches the latest registration of the record, or the
// record is no longer the registry's.
func (f *fetcher) loop(rec *record) {
	ctx := f.q.base
	for {
		t, ok := f.q.reg.target(rec)
		if !ok {
			return
		}
		caps, err := f.fetchWithRetry(ctx, t)
		if err != nil {
			f.q.metrics.capFetches.WithLabelValues("failed").Inc()
			if ctx.Err() == nil {
				f.q.log.Warn("capabilities fetch failed", "worker", t.id, "url", t.url, "err", err)
			}
		} else {
			f.q.metrics.capFetches.WithLabelValues("ok").Inc()
		}
		if !f.q.reg.fetchDone(t, caps) || ctx.Err() != nil {
			return
		}
	}
}

func (f *fetcher) fetchWithRetry(ctx context.Context, t fetchTarget) (*wire.Capabilities, error) {
	delay := f.cfg.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		var caps *wire.Capabilities
		if caps, err = f.fetchOnce(ctx, t); err == nil {
			return caps, nil
		}
		var apiErr *wire.APIError
		if attempt >= f.cfg.Attempts || errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests {
			return nil, err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		delay *= 2
	}
}

// fetchOnce hands the worker this Queen (POST /adopt, presenting the token and the
// worker's identity key when its registration carried one) and takes the capabilities it
// answers. A worker that refuses the hand-over (403) or has no /adopt (404, 405) is asked
// GET /capabilities instead: its capabilities are stored all the same, and it goes
// online once it heartbeats here by itself.
func (f *fetcher) fetchOnce(ctx context.Context, t fetchTarget) (*wire.Capabilities, error) {
	body, err := json.Marshal(wire.AdoptRequest{QueenURL: t.queenURL, QueenToken: f.q.cfg.Token})
	if err != nil {
		return nil, err
	}
	caps, err := f.call(ctx, http.MethodPost, t.url+wire.PathAdopt, body, t.key)
	var apiErr *wire.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusForbidden || apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed) {
		if apiErr.Status == http.StatusForbidden {
			f.q.log.Warn("worker refused to be handed this Queen; it heartbeats here only if it follows this Queen already",
				"worker", t.id, "err", err)
		}
		return f.call(ctx, http.MethodGet, t.url+wire.PathCapabilities, nil, "")
	}
	return caps, err
}

// call sends one request to a worker and decodes the capabilities it answers.
func (f *fetcher) call(ctx context.Context, method, u string, body []byte, key string) (*wire.Capabilities, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.q.cfg.Token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+f.q.cfg.Token)
	}
	if key != "" {
		req.Header.Set(wire.HeaderWorkerKey, key)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxCapabilitiesBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %w", method, u, wire.DecodeError(resp.StatusCode, data))
	}
	if len(data) > wire.MaxCapabilitiesBody {
		return nil, fmt.Errorf("%s %s: answer is over %d bytes", method, u, wire.MaxCapabilitiesBody)
	}
	var caps wire.Capabilities
	if err := json.Unmarshal(data, &caps); err != nil {
		return nil, fmt.Errorf("%s %s: not capabilities JSON: %w", method, u, err)
	}
	return &caps, nil
}
