// Package chat owns talking to a model: the OpenAI streaming client (to a worker directly
// or through the Queen's gateway), per-answer metrics, and the store of conversations.
package chat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TargetKind tells a worker reached directly from the Queen's gateway.
type TargetKind string

// Target kinds.
const (
	TargetWorker TargetKind = "worker" // one local worker, Queenless
	TargetQueen  TargetKind = "queen"  // the Queen routes by model name to any online worker
)

// Target is where a chat request goes.
type Target struct {
	Kind      TargetKind `json:"kind"`
	BaseURL   string     `json:"base_url"`             // http://127.0.0.1:8080 (worker) or the Queen's URL
	Model     string     `json:"model"`                // the model name the target serves
	WorkerID  string     `json:"worker_id,omitempty"`  // for TargetWorker
	ModelPath string     `json:"model_path,omitempty"` // lets the UI offer a respawn when the worker is gone
	Token     string     `json:"-"`                    // bearer token; never persisted
}

// Params are the sampling settings a user can change.
type Params struct {
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
	MaxTokens   int     `json:"max_tokens"` // 0 = until the model stops or the context ends
}

// DefaultParams are the settings of a new chat.
func DefaultParams() Params { return Params{Temperature: 0.7, TopP: 0.95, MaxTokens: 512} }

// Metrics measure one answer.
type Metrics struct {
	PromptTokens     int           `json:"prompt_tokens"`
	CompletionTokens int           `json:"completion_tokens"`
	TimeToFirstToken time.Duration `json:"ttft_ns"`
	Duration         time.Duration `json:"duration_ns"` // request sent to last byte
	// TokensPerSecond is the generation speed: tokens after the first over the time
	// since the first, so it does not count prompt processing.
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// Result is one answer, whole or cut short.
type Result struct {
	Text         string
	FinishReason string // wire.FinishStop, wire.FinishLength, or "" when cut short
	Metrics      Metrics
	// Worker is the worker the Queen's gateway routed the request to, "" when it did not
	// say (a worker answering directly).
	Worker string
}

// Client sends chat requests. The zero value is not usable; use NewClient.
type Client struct {
	http *http.Client
	// ConnectTimeout bounds the time to response headers (a worker that accepted the
	// request answers headers before generating). The stream itself is bounded by ctx.
	ConnectTimeout time.Duration
}

// NewClient returns a client over hc (nil = a fresh client with no overall timeout, since
// a stream lasts as long as the answer).
func NewClient(hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{http: hc, ConnectTimeout: 30 * time.Second}
}

// UnreachableError means the target could not be reached, or the connection broke
// mid-answer: for a worker it is gone (offer a respawn), for the Queen it is down.
type UnreachableError struct {
	Target Target
	During string // "connect" or "stream"
	Err    error
}

func (e *UnreachableError) Error() string {
	who := "worker " + e.Target.WorkerID
	if e.Target.Kind == TargetQueen {
		who = "Queen"
	}
	if e.During == "stream" {
		return fmt.Sprintf("%s at %s dropped the answer: %v", who, e.Target.BaseURL, e.Err)
	}
	return fmt.Sprintf("%s at %s is unreachable: %v", who, e.Target.BaseURL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ContextExceededError means the conversation no longer fits the model's context.
type ContextExceededError struct {
	PromptTokens  int // 0 when the server did not say
	ContextLength int
	API           *wire.APIError
}

// Known reports whether the server said both the prompt's and the context's size.
func (e *ContextExceededError) Known() bool { return e.PromptTokens > 0 && e.ContextLength > 0 }

// Over is by how many tokens the prompt is longer than the context (0 when unknown, or
// when the prompt exactly fills the context and leaves no room for the answer).
func (e *ContextExceededError) Over() int {
	if !e.Known() {
		return 0
	}
	return max(e.PromptTokens-e.ContextLength, 0)
}

func (e *ContextExceededError) Error() string {
	switch {
	case e.Over() > 0:
		return fmt.Sprintf("the conversation is %d tokens longer than the model's context of %d: start a new chat or shorten it", e.Over(), e.ContextLength)
	case e.Known():
		return fmt.Sprintf("the conversation fills the model's whole context of %d tokens, leaving no room for the answer: start a new chat or shorten it", e.ContextLength)
	}
	return "the conversation is longer than the model's context: start a new chat or shorten it (" + e.API.Detail.Message + ")"
}

func (e *ContextExceededError) Unwrap() error { return e.API }

// Stream sends msgs to t and calls onDelta with each piece of text as it arrives (from
// the calling goroutine). Cancelling ctx is Stop: the connection closes, so the worker
// stops generating, and Stream returns the partial Result with an error that
// errors.Is(err, context.Canceled). Other errors: *UnreachableError,
// *ContextExceededError, or *wire.APIError.
func (c *Client) Stream(ctx context.Context, t Target, msgs []wire.ChatMessage, p Params, onDelta func(string)) (Result, error) {
	req := wire.ChatCompletionRequest{Model: t.Model, Messages: msgs}
	temp, topP := p.Temperature, p.TopP
	req.Temperature, req.TopP = &temp, &topP
	if p.MaxTokens > 0 {
		mt := p.MaxTokens
		req.MaxTokens = &mt
	}
	req.Stream = true
	req.StreamOptions = &wire.StreamOptions{IncludeUsage: true}
	body, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("encode chat request: %w", err)
	}

	start := time.Now()
	resp, err := c.post(ctx, t, body)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()

	var (
		res       Result
		text      strings.Builder
		firstAt   time.Time
		deltas    int
		usage     *wire.Usage
		streamErr error
	)
	res.Worker = resp.Header.Get(queen.HeaderWorker)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			// A request the Queen held while its model loaded got its headers before a
			// worker was chosen: the gateway names the worker in a comment instead.
			if id, ok := bytes.CutPrefix(line, []byte(workerComment)); ok && res.Worker == "" {
				res.Worker = string(bytes.TrimSpace(id))
			}
			continue // blank separators, other comments, event: lines
		}
		data = bytes.TrimSpace(data)
		if string(data) == wire.SSEDone {
			break
		}
		var chunk struct {
			wire.ChatCompletionChunk
			Error *wire.ErrorDetail `json:"error"` // an error sent after the headers
		}
		if err := json.Unmarshal(data, &chunk); err != nil {
			streamErr = fmt.Errorf("bad stream chunk %.80q: %w", data, err)
			break
		}
		if chunk.Error != nil {
			streamErr = classify(&wire.APIError{Status: resp.StatusCode, Detail: *chunk.Error})
			break
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
		for _, ch := range chunk.Choices {
			if ch.Delta.Content != "" {
				if firstAt.IsZero() {
					firstAt = time.Now()
				}
				deltas++
				text.WriteString(ch.Delta.Content)
				onDelta(ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				res.FinishReason = *ch.FinishReason
			}
		}
	}
	if streamErr == nil {
		streamErr = sc.Err()
		if streamErr != nil {
			if ctx.Err() != nil {
				streamErr = fmt.Errorf("stopped: %w", context.Cause(ctx))
			} else {
				streamErr = &UnreachableError{Target: t, During: "stream", Err: streamErr}
			}
		} else if res.FinishReason == "" && ctx.Err() == nil {
			streamErr = &UnreachableError{Target: t, During: "stream", Err: io.ErrUnexpectedEOF}
		}
	}

	end := time.Now()
	res.Text = text.String()
	res.Metrics = metrics(start, firstAt, end, deltas, usage)
	return res, streamErr
}

func metrics(start, firstAt, end time.Time, deltas int, usage *wire.Usage) Metrics {
	m := Metrics{Duration: end.Sub(start), CompletionTokens: deltas}
	if usage != nil {
		m.PromptTokens = usage.PromptTokens
		m.CompletionTokens = usage.CompletionTokens
	}
	if !firstAt.IsZero() {
		m.TimeToFirstToken = firstAt.Sub(start)
		if gen := end.Sub(firstAt); gen > 0 && m.CompletionTokens > 1 {
			m.TokensPerSecond = float64(m.CompletionTokens-1) / gen.Seconds()
		}
	}
	return m
}

// post sends the request and returns a 200 response, or a typed error after draining
// the body.
func (c *Client) post(ctx context.Context, t Target, body []byte) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(t.BaseURL, "/")+wire.PathChat, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("chat request to %q: %w", t.BaseURL, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")
	if t.Token != "" {
		hreq.Header.Set("Authorization", wire.BearerPrefix+t.Token)
	}

	resp, err := c.do(ctx, hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("stopped: %w", context.Cause(ctx))
		}
		return nil, &UnreachableError{Target: t, During: "connect", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, classify(wire.DecodeError(resp.StatusCode, b))
	}
	return resp, nil
}

// do runs hreq with a deadline on the response headers only: a worker answers headers
// before it generates, and after that only ctx bounds the stream.
func (c *Client) do(ctx context.Context, hreq *http.Request) (*http.Response, error) {
	hctx, cancel := context.WithCancelCause(ctx)
	type answer struct {
		resp *http.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() { // owned here: it ends when the request returns, which cancel forces
		resp, err := c.http.Do(hreq.WithContext(hctx))
		done <- answer{resp, err}
	}()
	timer := time.NewTimer(c.ConnectTimeout)
	defer timer.Stop()
	select {
	case a := <-done:
		if a.err != nil {
			cancel(nil)
			return nil, a.err
		}
		// The stream lives on hctx; release it when the body closes.
		a.resp.Body = &cancelOnClose{ReadCloser: a.resp.Body, cancel: cancel}
		return a.resp, nil
	case <-timer.C:
		cancel(errHeaderTimeout)
		a := <-done
		if a.resp != nil {
			a.resp.Body.Close()
		}
		return nil, fmt.Errorf("no answer within %s: %w", c.ConnectTimeout, errHeaderTimeout)
	}
}

var errHeaderTimeout = errors.New("timed out waiting for the answer to start")

// workerComment starts the SSE comment of the Queen's gateway that names the worker of
// a held stream (queen/gateway.go).
const workerComment = ": worker "

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

// classify turns an API error into the typed error the UI acts on.
func classify(e *wire.APIError) error {
	if e.Detail.Code == wire.CodeContextExceeded || e.Detail.Type == "exceed_context_size_error" {
		return &ContextExceededError{PromptTokens: e.Detail.PromptTokens, ContextLength: e.Detail.ContextLength, API: e}
	}
	return e
}

// Probe asks base (a worker or the Queen) which models it serves, within timeout: the
// picker's "reachable" check.
func (c *Client) Probe(ctx context.Context, base, token string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+wire.PathModels, nil)
	if err != nil {
		return nil, fmt.Errorf("probe %q: %w", base, err)
	}
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, wire.DecodeError(resp.StatusCode, b)
	}
	var list wire.ModelList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("probe %s: not a model list: %w", base, err)
	}
	names := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		names = append(names, m.ID)
	}
	return names, nil
}
