package queen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	return c
}

// fetcher fetches a registered worker's /capabilities in the background, so no request
// ever waits on a slow worker. At most one fetch goroutine exists per worker (the
// registry's fetching flag) and at most Concurrency of them talk to workers at once.
type fetcher struct {
	q      *Queen
	cfg    FetchConfig
	client *http.Client
	slots  chan struct{}
}

func newFetcher(q *Queen, cfg FetchConfig) *fetcher {
	return &fetcher{
		q:   q,
		cfg: cfg,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // workers are reached directly, never via $HTTP_PROXY
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     30 * time.Second,
			},
			Timeout: cfg.Timeout,
			// Only the registered host:port's /capabilities is ever fetched.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		slots: make(chan struct{}, cfg.Concurrency),
	}
}

// start runs the fetch loop of one worker; the Queen's lifetime owns the goroutine.
func (f *fetcher) start(id string) {
	f.q.wg.Add(1)
	go func() {
		defer f.q.wg.Done()
		f.loop(id)
	}()
}

// loop fetches until the result matches the latest registration of the worker.
func (f *fetcher) loop(id string) {
	ctx := f.q.base
	for {
		t, ok := f.q.reg.target(id)
		if !ok {
			return
		}
		caps, err := f.fetchWithRetry(ctx, t)
		if err != nil {
			f.q.metrics.capFetches.WithLabelValues("failed").Inc()
			if ctx.Err() == nil {
				f.q.log.Warn("capabilities fetch failed", "worker", id, "url", t.url, "err", err)
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

func (f *fetcher) fetchOnce(ctx context.Context, t fetchTarget) (*wire.Capabilities, error) {
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	u := t.url + wire.PathCapabilities + "?" + wire.QueryQueenURL + "=" + url.QueryEscape(t.queenURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if f.q.cfg.Token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+f.q.cfg.Token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxCapabilitiesBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %w", u, wire.DecodeError(resp.StatusCode, body))
	}
	if len(body) > wire.MaxCapabilitiesBody {
		return nil, fmt.Errorf("GET %s: answer is over %d bytes", u, wire.MaxCapabilitiesBody)
	}
	var caps wire.Capabilities
	if err := json.Unmarshal(body, &caps); err != nil {
		return nil, fmt.Errorf("GET %s: not capabilities JSON: %w", u, err)
	}
	return &caps, nil
}
