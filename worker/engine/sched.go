package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// The scheduler is llama-server's loop: one goroutine owns the llama.cpp context and, at
// each step, decodes one batch holding the next token of every generating sequence plus
// a chunk of each prompt being read (chunked prefill, so a long prompt never stalls the
// streams already running for more than one step). Requests reach it through a bounded
// FIFO; a request whose client left is dropped within one step.
type scheduler struct {
	e         *Engine
	lctx      llama.Context
	pool      llama.Threadpool // the context's CPU threads; 0 = ggml's own
	emb       *embedder        // the embedding context; nil without --embeddings
	mem       llama.Memory
	batch     llama.Batch
	seqs      []*sequence
	step      uint64 // decode steps so far: the sequences' LRU clock
	nextStart uint64 // admission counter

	wake   chan struct{} // buffered 1: a submit or close pokes an idle loop
	exited chan struct{} // closed when run has returned and freed the context

	mu       sync.Mutex
	embeds   []*embedJob // Embed calls waiting (only with an embedder)
	pending  []*request  // FIFO of requests waiting for a sequence
	reserved int         // admitted requests not yet queued (Admit before Run)
	active   int         // sequences in use
	closing  bool
	// Figures for Stats, updated at the end of each step.
	kvTokens                  int
	cachedTotal, promptTotal  int64
	maxPromptChunkWhileStream int
}

// request is one generation handed to the scheduler.
type request struct {
	ctx  context.Context
	job  *Job
	emit func([]byte) error
	done chan struct{} // closed when res and err are final
	res  Result
	err  error
}

type seqState int

const (
	seqFree   seqState = iota
	seqPrompt          // reading its prompt
	seqGen             // generating
)

// sequence is one of the context's parallel sequences. cached mirrors its KV cache:
// the tokens decoded into it, in order, kept after a request ends so the next request
// that shares a prefix reads only the rest (the prompt cache).
type sequence struct {
	id      llama.SeqId
	state   seqState
	req     *request
	cached  []llama.Token
	lastUse uint64

	prompt   []llama.Token
	nRead    int    // prompt tokens in the cache
	started  uint64 // admission order: prompts are read oldest first
	smpl     llama.Sampler
	next     llama.Token // sampled, not yet decoded
	inBatch  bool        // this step's batch holds tokens of it
	logitIdx int32       // this step's batch index of its logits; -1 = none
	st       stopper
	piece    []byte
	res      Result
}

func newScheduler(e *Engine, lctx llama.Context, pool llama.Threadpool) *scheduler {
	mem, _ := llama.GetMemory(lctx)
	s := &scheduler{
		e:      e,
		lctx:   lctx,
		pool:   pool,
		mem:    mem,
		batch:  llama.BatchInit(int32(e.nBatch), 0, 1),
		wake:   make(chan struct{}, 1),
		exited: make(chan struct{}),
		// While streams run, a prompt is read this many tokens a step at most, so the
		// streams keep their pace; alone, a prompt takes whole batches.
		maxPromptChunkWhileStream: max(e.nBatch/4, 32),
	}
	for i := range e.parallel {
		s.seqs = append(s.seqs, &sequence{id: llama.SeqId(i), logitIdx: -1, piece: make([]byte, 256)})
	}
	return s
}

// Generate runs job to its end, handing emit each piece of text that is final: stop
// strings are cut off and never sent, and a piece never ends inside a UTF-8 character.
// emit runs on the scheduler's goroutine, so it must not block (the worker's responder
// only appends to a buffer); its slice is valid only during the call. Generate returns
// ErrBusy at once when every sequence is taken and the queue is full, and ctx's error,
// with the counts so far, when ctx ends first (a dropped client).
func (e *Engine) Generate(ctx context.Context, job *Job, emit func([]byte) error) (Result, error) {
	t, err := e.Admit(ctx, job)
	if err != nil {
		return Result{PromptTokens: job.PromptTokens()}, err
	}
	return t.Run(emit)
}

// Ticket is an admitted request: it holds a place among the sequences and the queue
// until Run, so a caller learns of ErrBusy before it commits to an answer (a stream's
// status line).
type Ticket struct {
	s *scheduler
	r *request
}

// Admit takes a place for job, or says ErrBusy (every sequence taken and the queue
// full) or ErrClosed at once. The caller must call Run or Cancel.
func (e *Engine) Admit(ctx context.Context, job *Job) (*Ticket, error) {
	s := e.sched
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return nil, ErrClosed
	case s.active+len(s.pending)+s.reserved >= e.parallel+e.queueMax:
		return nil, ErrBusy
	}
	s.reserved++
	return &Ticket{s: s, r: &request{ctx: ctx, job: job, done: make(chan struct{})}}, nil
}

// Cancel gives the place back without running.
func (t *Ticket) Cancel() {
	t.s.mu.Lock()
	t.s.reserved--
	t.s.mu.Unlock()
}

// Run queues the request and waits for its end; see Generate.
func (t *Ticket) Run(emit func([]byte) error) (Result, error) {
	s, r := t.s, t.r
	r.emit = emit
	s.mu.Lock()
	s.reserved--
	if s.closing {
		s.mu.Unlock()
		return Result{PromptTokens: r.job.PromptTokens()}, ErrClosed
	}
	s.pending = append(s.pending, r)
	s.mu.Unlock()
	s.poke()
	<-r.done
	return r.res, r.err
}

func (s *scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Active: s.active, Queued: len(s.pending) + s.reserved, KVTokens: s.kvTokens,
		CachedPromptTokens: s.cachedTotal, PromptTokens: s.promptTotal}
}

// close refuses new requests, ends the queued ones and waits for the loop to finish the
// running ones and free the context.
func (s *scheduler) close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	queued := s.pending
	s.pending = nil // embedding jobs already queued are few (maxEmbedJobs): run finishes them
	s.mu.Unlock()
	for _, r := range queued {
		r.res.PromptTokens = r.job.PromptTokens()
		r.job.release()
		r.err = ErrClosed
		close(r.done)
	}
	s.poke()
	select {
	case <-s.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the loop. It owns lctx, mem, batch and every sequence.
func (s *scheduler) run() {
	defer close(s.exited)
	defer func() {
		for _, q := range s.seqs {
			if q.smpl != 0 {
				llama.SamplerFree(q.smpl)
			}
		}
		_ = llama.BatchFree(s.batch)
		_ = llama.Free(s.lctx)
		if s.emb != nil {
			s.emb.free()
		}
		llama.ThreadpoolFree(s.pool) // after the context that used it
	}()
	for {
		embedding := s.emb != nil && s.runEmbeds() // between steps: a stream waits one embedding batch at most
		busy, closing := s.admit()
		if !busy {
			if embedding {
				continue
			}
			if closing {
				return
			}
			<-s.wake
			continue
		}
		s.readMedia()
		s.decodeStep()
		s.dropCancelled()
		s.publish()
	}
}

// admit drops queued requests whose client left and gives waiting requests free
// sequences, oldest first. It reports whether any sequence is in use.
func (s *scheduler) admit() (busy, closing bool) {
	type start struct {
		q *sequence
		r *request
	}
	var starts []start
	s.mu.Lock()
	kept := s.pending[:0]
	for _, r := range s.pending {
		if err := r.ctx.Err(); err != nil {
			r.res.PromptTokens = r.job.PromptTokens()
			r.job.release()
			r.err = err
			close(r.done)
			continue
		}
		kept = append(kept, r)
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	for len(s.pending) > 0 && s.active < len(s.seqs) {
		r := s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		q := s.pick(r.job.reusable())
		q.state = seqPrompt // taken: the next pick passes it by
		starts = append(starts, start{q, r})
		s.active++
	}
	busy, closing = s.active > 0, s.closing
	s.mu.Unlock()
	// llama.cpp work (cache trimming, samplers, grammars) outside the lock, so Admit
	// and Stats never wait on it.
	for _, st := range starts {
		s.start(st.q, st.r)
	}
	return busy, closing
}

// minReuse is the shortest cached prefix worth keeping a sequence for: more than the
// BOS token every prompt shares, and a tenth of the prompt (llama-server's rule of
// thumb), so a cache that matches little does not win over an empty sequence.
func minReuse(promptLen int) int { return max(2, promptLen/10) }

// pick chooses the free sequence whose cache shares the longest prefix with prompt
// (llama-server's slot similarity), if that prefix is worth reusing (minReuse);
// otherwise the least recently used free sequence, empty ones first, so a cache that
// matches nothing else survives longest.
func (s *scheduler) pick(prompt []llama.Token) *sequence {
	var best, lru *sequence
	bestN := 0
	for _, q := range s.seqs {
		if q.state != seqFree {
			continue
		}
		if n := commonPrefix(q.cached, prompt); n >= minReuse(len(prompt)) && n > bestN {
			best, bestN = q, n
		}
		if lru == nil || cheaperToLose(q, lru) {
			lru = q
		}
	}
	if best != nil {
		return best
	}
	return lru
}

// cheaperToLose reports whether a's cache is worth less than b's: empty first, then
// the least recently used.
func cheaperToLose(a, b *sequence) bool {
	if ae, be := len(a.cached) == 0, len(b.cached) == 0; ae != be {
		return ae
	}
	return a.lastUse < b.lastUse
}

func commonPrefix(a, b []llama.Token) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// start sets q up for r: the cached prefix stays, the rest of the cache goes, and at
// least the prompt's last token is read again, since its logits give the first token.
func (s *scheduler) start(q *sequence, r *request) {
	prompt := r.job.tokens
	keep := min(commonPrefix(q.cached, r.job.reusable()), len(prompt)-1)
	if keep < minReuse(len(prompt)) {
		keep = 0
	}
	if ok, err := llama.MemorySeqRm(s.mem, q.id, llama.Pos(keep), -1); err != nil || !ok {
		// A cache that cannot drop a tail (a recurrent model) is cleared whole.
		_, _ = llama.MemorySeqRm(s.mem, q.id, -1, -1)
		keep = 0
	}
	// A sliding-window model keeps only the last n_swa positions: a prefix whose start
	// the window already dropped cannot be extended, so the prompt is read again.
	if swa := s.e.nSWA; keep > 0 && swa > 0 {
		if lo, err := llama.MemorySeqPosMin(s.mem, q.id); err != nil || int(lo) > max(0, keep-swa) {
			_, _ = llama.MemorySeqRm(s.mem, q.id, -1, -1)
			keep = 0
		}
	}
	q.cached = q.cached[:keep]
	s.nextStart++
	q.state, q.req, q.prompt, q.nRead, q.started = seqPrompt, r, prompt, keep, s.nextStart
	q.smpl = newSampler(s.e.vocab, r.job.sampling)
	q.st = stopper{stops: r.job.stops, text: q.st.text[:0]}
	q.res = Result{PromptTokens: r.job.PromptTokens(), CachedTokens: keep}
	s.cachedTotal += int64(keep)
	s.promptTotal += int64(r.job.PromptTokens())
}

// decodeStep builds and decodes one batch, then samples every sequence that got logits.
func (s *scheduler) decodeStep() {
	s.step++
	_ = s.batch.Clear()
	one := []llama.SeqId{0}
	streaming := false
	for _, q := range s.seqs {
		q.logitIdx, q.inBatch = -1, false
		if q.state != seqGen {
			continue
		}
		one[0] = q.id
		_ = s.batch.Add(q.next, llama.Pos(len(q.cached)), one, true)
		q.logitIdx, q.inBatch = s.batch.NTokens-1, true
		q.cached = append(q.cached, q.next)
		streaming = true
	}
	budget := s.e.nBatch - int(s.batch.NTokens)
	if streaming {
		budget = min(budget, s.maxPromptChunkWhileStream)
	}
	for _, q := range s.oldestFirst(seqPrompt) {
		if budget <= 0 {
			break
		}
		if q.req.job.media != nil {
			continue // readMedia reads it
		}
		take := min(len(q.prompt)-q.nRead, budget)
		one[0] = q.id
		for i := q.nRead; i < q.nRead+take; i++ {
			last := i == len(q.prompt)-1
			_ = s.batch.Add(q.prompt[i], llama.Pos(i), one, last)
			if last {
				q.logitIdx = s.batch.NTokens - 1
			}
		}
		q.inBatch = true
		q.cached = append(q.cached, q.prompt[q.nRead:q.nRead+take]...)
		q.nRead += take
		budget -= take
	}
	if s.batch.NTokens == 0 {
		return
	}
	rc, err := llama.Decode(s.lctx, s.batch)
	if err == nil && rc != 0 {
		err = fmt.Errorf("llama_decode returned %d", rc)
	}
	if err != nil {
		// Every sequence in this batch has a cache that no longer matches what it
		// records: fail them and forget their caches.
		for _, q := range s.seqs {
			if q.inBatch {
				_, _ = llama.MemorySeqRm(s.mem, q.id, -1, -1)
				q.cached = q.cached[:0]
				s.finish(q, "", fmt.Errorf("llama_decode: %w", err))
			}
		}
		return
	}
	for _, q := range s.seqs {
		if q.logitIdx >= 0 && q.state != seqFree {
			s.sample(q)
		}
	}
}

// oldestFirst lists the sequences in state st in the order their requests started.
func (s *scheduler) oldestFirst(st seqState) []*sequence {
	var out []*sequence
	for _, q := range s.seqs {
		if q.state == st {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *sequence) int { return cmp.Compare(a.started, b.started) })
	return out
}

// sample draws q's next token from this step's logits and hands its text on.
func (s *scheduler) sample(q *sequence) {
	job := q.req.job
	tok := llama.SamplerSample(q.smpl, s.lctx, q.logitIdx)
	q.state = seqGen
	// Small models sometimes emit BOS where they mean "the end".
	if !job.sampling.IgnoreEOS && (llama.VocabIsEOG(s.e.vocab, tok) || tok == s.e.bos) {
		s.finish(q, FinishStop, q.st.flush(q.req.emit))
		return
	}
	n := llama.TokenToPiece(s.e.vocab, tok, q.piece, 0, false)
	if n < 0 {
		q.piece = make([]byte, -n)
		n = llama.TokenToPiece(s.e.vocab, tok, q.piece, 0, false)
	}
	q.res.CompletionTokens++
	stopped, err := q.st.add(q.piece[:max(n, 0)], q.req.emit)
	switch {
	case err != nil || stopped:
		s.finish(q, FinishStop, err)
	case q.res.CompletionTokens >= job.maxNew:
		s.finish(q, FinishLength, q.st.flush(q.req.emit))
	default:
		q.next = tok
	}
}

// dropCancelled ends the sequences whose client left or whose worker stops.
func (s *scheduler) dropCancelled() {
	for _, q := range s.seqs {
		if q.state == seqFree {
			continue
		}
		if err := q.req.ctx.Err(); err != nil {
			s.finish(q, "", err)
		}
	}
}

// finish ends q's request and frees q; its cache stays for the next request.
func (s *scheduler) finish(q *sequence, reason string, err error) {
	r := q.req
	r.job.release()
	r.res = q.res
	r.res.FinishReason = reason
	r.err = err
	if q.smpl != 0 {
		llama.SamplerFree(q.smpl)
		q.smpl = 0
	}
	q.state, q.req, q.prompt, q.lastUse = seqFree, nil, nil, s.step
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
	close(r.done)
}

// publish refreshes the figures Stats reports.
func (s *scheduler) publish() {
	n := 0
	for _, q := range s.seqs {
		n += len(q.cached)
	}
	s.mu.Lock()
	s.kvTokens = n
	s.mu.Unlock()
}
