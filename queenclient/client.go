// Package queenclient owns talking to a Queen: health, register, deregister, list, get
// and the event stream, with typed errors, timeouts and bounded retries.
package queenclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Options tune a Client; zero values pick the defaults named on each field.
type Options struct {
	Timeout      time.Duration // per attempt; default 3s
	Retries      int           // extra attempts on transport errors, 429 and 5xx; default 2; -1 = none
	RetryWait    time.Duration // first backoff; default 50ms (jittered, doubling)
	RetryMaxWait time.Duration // backoff cap; default 1s
}

// Client talks to one Queen. Safe for concurrent use.
type Client struct {
	base   string
	token  string
	r      *resty.Client
	stream *http.Client // no overall timeout: the event stream lives as long as its ctx
}

// ErrBadURL is a Queen URL that is not http(s)://host[:port].
var ErrBadURL = errors.New("queen URL must look like http://host:port")

// New returns a client for the Queen at baseURL ("http://host:port").
func New(baseURL, token string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: got %q", ErrBadURL, baseURL)
	}
	base := strings.TrimRight(baseURL, "/")
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Second
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = 2
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.RetryWait <= 0 {
		opts.RetryWait = 50 * time.Millisecond
	}
	if opts.RetryMaxWait <= 0 {
		opts.RetryMaxWait = time.Second
	}
	r := resty.New().
		SetBaseURL(base).
		SetTimeout(opts.Timeout).
		SetRetryCount(opts.Retries).
		SetRetryWaitTime(opts.RetryWait).
		SetRetryMaxWaitTime(opts.RetryMaxWait).
		SetHeader("Accept", "application/json").
		// resty retries only transport errors by default; a busy or failing Queen
		// (429, 5xx) is worth another try too. Its backoff is capped and jittered.
		AddRetryCondition(func(resp *resty.Response, err error) bool {
			if err != nil {
				return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
			}
			return resp.StatusCode() == http.StatusTooManyRequests || resp.StatusCode() >= 500
		}).
		SetLogger(quietLogger{})
	if token != "" {
		r.SetAuthToken(token)
	}
	return &Client{base: base, token: token, r: r, stream: &http.Client{}}, nil
}

// URL is the Queen's base URL.
func (c *Client) URL() string { return c.base }

// Health asks GET /health.
func (c *Client) Health(ctx context.Context) (wire.QueenHealth, error) {
	var out wire.QueenHealth
	err := c.do(ctx, http.MethodGet, wire.PathHealth, nil, &out)
	return out, err
}

// Register sends POST /v1/queen/register-worker (idempotent at the Queen).
func (c *Client) Register(ctx context.Context, req wire.RegisterRequest) (wire.RegisterResponse, error) {
	var out wire.RegisterResponse
	err := c.do(ctx, http.MethodPost, wire.PathRegisterWorker, req, &out)
	return out, err
}

// Deregister sends DELETE /v1/workers/{id}. An id the Queen does not know is not an error.
func (c *Client) Deregister(ctx context.Context, id string) error {
	return c.DeregisterWorker(ctx, id, "")
}

// DeregisterWorker is Deregister proving the worker's identity key (the Queen removes a
// live worker bound to a key only with that key; docs/security.md). key "" sends none.
func (c *Client) DeregisterWorker(ctx context.Context, id, key string) error {
	req := c.r.R().SetContext(ctx)
	if key != "" {
		req.SetHeader(wire.HeaderWorkerKey, key)
	}
	err := c.exec(ctx, req, http.MethodDelete, wire.PathWorkers+"/"+url.PathEscape(id), nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// List returns GET /v1/workers.
func (c *Client) List(ctx context.Context) ([]wire.Worker, error) {
	var out wire.WorkerList
	err := c.do(ctx, http.MethodGet, wire.PathWorkers, nil, &out)
	return out.Workers, err
}

// Get returns GET /v1/workers/{id}; IsNotFound(err) when the Queen does not know it.
func (c *Client) Get(ctx context.Context, id string) (wire.Worker, error) {
	var out wire.Worker
	err := c.do(ctx, http.MethodGet, wire.PathWorkers+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// IsNotFound reports a 404 answer.
func IsNotFound(err error) bool {
	var apiErr *wire.APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
}

// UnreachableError is a Queen that did not answer (after retries).
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("queen %s unreachable: %v (is it running, and is the URL right?)", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// do runs one call. Non-2xx answers become *wire.APIError (errors.As); transport
// failures become *UnreachableError.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	req := c.r.R().SetContext(ctx)
	if body != nil {
		req.SetHeader("Content-Type", "application/json").SetBody(body)
	}
	return c.exec(ctx, req, method, path, out)
}

// exec runs a prepared request as do does.
func (c *Client) exec(ctx context.Context, req *resty.Request, method, path string, out any) error {
	resp, err := req.Execute(method, path)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("queen %s %s: %w", method, path, ctx.Err())
		}
		return &UnreachableError{URL: c.base, Err: err}
	}
	if resp.StatusCode() < 200 || resp.StatusCode() > 299 {
		return fmt.Errorf("queen %s %s: %w", method, path, wire.DecodeError(resp.StatusCode(), resp.Body()))
	}
	if out != nil && len(resp.Body()) > 0 {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			return fmt.Errorf("queen %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Events opens GET /v1/events and delivers each event until ctx ends or the stream
// breaks; the channel is closed then. The error is for the opening only.
func (c *Client) Events(ctx context.Context) (<-chan wire.Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+wire.PathEvents, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+c.token)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, &UnreachableError{URL: c.base, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		return nil, fmt.Errorf("queen events: %w", wire.DecodeError(resp.StatusCode, b[:n]))
	}
	ch := make(chan wire.Event, 64)
	go func() { // owns the body; exits on ctx end or stream end
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "data:"):
				data.WriteString(strings.TrimSpace(strings.TrimPrefix(line, "data:")))
			case line == "":
				if data.Len() == 0 {
					continue
				}
				var ev wire.Event
				if json.Unmarshal([]byte(data.String()), &ev) == nil {
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				data.Reset()
			}
		}
	}()
	return ch, nil
}

// quietLogger keeps resty's retry chatter out of the app's output; errors reach the caller.
type quietLogger struct{}

func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
