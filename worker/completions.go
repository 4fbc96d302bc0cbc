package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// handleCompletion serves POST /v1/completions: one prompt streamed or whole, or an
// array of prompts answered whole with one choice each, generated side by side.
func (w *Worker) handleCompletion(rw http.ResponseWriter, r *http.Request) error {
	var req wire.CompletionRequest
	if err := decodeBody(rw, r, &req); err != nil {
		return err
	}
	e, err := w.ready(req.Model)
	if err != nil {
		return err
	}
	if len(req.Prompt) == 0 {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "prompt is empty: send the text to continue")
	}
	for i, p := range req.Prompt {
		field := "prompt"
		if len(req.Prompt) > 1 {
			field = fmt.Sprintf("prompt[%d]", i)
		}
		if p == "" {
			return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "%s is empty: send the text to continue", field)
		}
		if err := checkNoNUL(field, p); err != nil {
			return err
		}
	}
	if err := refuseUnsupported(&req.SamplingParams); err != nil {
		return err
	}
	sampling, err := samplingFrom(&req.SamplingParams, e.ContextSize())
	if err != nil {
		return err
	}
	if len(req.Prompt) == 1 {
		return w.generate(rw, r, e, req.Prompt[0], false, sampling, &req.SamplingParams, textFormat, nil)
	}
	if req.Stream {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField,
			"stream takes one prompt: send the %d prompts as separate requests, or without stream", len(req.Prompt))
	}
	if n := e.Capacity(); len(req.Prompt) > n {
		// Each prompt takes a place among the sequences and the queue: more could never
		// be admitted together, and 429 would invite a retry that fails the same way.
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidField,
			"prompt has %d prompts but this worker holds %d requests at once (--parallel + --queue): send at most %d", len(req.Prompt), n, n)
	}
	return w.completeMany(rw, r, e, req.Prompt, sampling)
}

// completeMany answers an array of prompts whole: every prompt is admitted first (so a
// busy worker answers 429 before any work), then all run at once on their own
// sequences.
func (w *Worker) completeMany(rw http.ResponseWriter, r *http.Request, e *engine.Engine, prompts []string, s engine.Sampling) error {
	start := time.Now()
	jobs := make([]*engine.Job, len(prompts))
	for i, p := range prompts {
		job, err := e.Prepare(p, false, s)
		if err != nil {
			return prepareError(err)
		}
		jobs[i] = job
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(w.stopping, cancel)()
	w.used.touch()
	defer w.used.touch()
	tickets := make([]*engine.Ticket, 0, len(jobs))
	for _, job := range jobs {
		t, err := e.Admit(ctx, job)
		if err != nil {
			for _, t := range tickets {
				t.Cancel()
			}
			if errors.Is(err, engine.ErrBusy) {
				rw.Header().Set("Retry-After", "1")
			}
			return admitError(e, err)
		}
		tickets = append(tickets, t)
	}
	texts := make([][]byte, len(jobs))
	results := make([]engine.Result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, t := range tickets {
		wg.Go(func() {
			results[i], errs[i] = t.Run(func(b []byte) error { texts[i] = append(texts[i], b...); return nil })
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		switch {
		case r.Context().Err() != nil:
			return nil // the client left
		case w.stopping.Err() != nil:
			return errShuttingDown()
		}
		return fmt.Errorf("generate: %w", err)
	}
	out := wire.Completion{ID: newID("cmpl-"), Object: "text_completion", Created: time.Now().Unix(), Model: w.modelName, Usage: &wire.Usage{}}
	cached := 0
	for i, res := range results {
		reason := res.FinishReason
		out.Choices = append(out.Choices, wire.CompletionChoice{Index: i, Text: string(texts[i]), FinishReason: &reason})
		out.Usage.PromptTokens += res.PromptTokens
		out.Usage.CompletionTokens += res.CompletionTokens
		cached += res.CachedTokens
	}
	out.Usage.TotalTokens = out.Usage.PromptTokens + out.Usage.CompletionTokens
	out.Usage.PromptTokensDetails = &wire.PromptTokensDetails{CachedTokens: cached}
	wire.WriteJSON(rw, http.StatusOK, out)
	w.log.Info("request", "path", r.URL.Path, "prompts", len(prompts), "prompt_tokens", out.Usage.PromptTokens,
		"completion_tokens", out.Usage.CompletionTokens, "ms", time.Since(start).Milliseconds())
	return nil
}
