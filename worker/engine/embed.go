package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// ErrNoEmbeddings is returned by Embed on a worker started without --embeddings.
var ErrNoEmbeddings = errors.New("this worker serves no embeddings: start it with --embeddings")

// maxEmbedSeqs is how many inputs one embedding decode holds (sequences of the
// embedding context); larger input arrays go in several decodes.
const maxEmbedSeqs = 8

// embedder is the second context of a worker started with --embeddings: same model,
// embeddings on, pooled per sequence. The scheduler's goroutine owns it too, so
// llama.cpp is only ever called from one goroutine.
type embedder struct {
	lctx    llama.Context
	mem     llama.Memory
	batch   llama.Batch
	nEmbd   int
	ctxSize int // tokens per input
	pooling llama.PoolingType
}

// EmbedResult is the vectors of one Embed call, in input order, and the tokens read.
type EmbedResult struct {
	Vectors [][]float32
	Tokens  int
}

// embedJob is one Embed call waiting for the scheduler, which serves it one batch of
// inputs per loop iteration so running streams wait one batch at most.
type embedJob struct {
	ctx    context.Context
	inputs [][]llama.Token
	next   int // inputs embedded so far
	done   chan struct{}
	res    EmbedResult
	err    error
}

// maxEmbedJobs bounds the Embed calls waiting; beyond it Embed says ErrBusy.
const maxEmbedJobs = 64

// newEmbedder creates the embedding context: pooling from the model (its GGUF's
// <arch>.pooling_type), mean when it names none, since a chat model's "none" gives no
// vector per input. The batch is as large as the context, because llama.cpp pools a
// sequence only when all its tokens are in one micro-batch.
func (e *Engine) newEmbedder(threads int32, pool llama.Threadpool) (*embedder, error) {
	pooling := llama.PoolingTypeMean
	arch, _ := llama.ModelMetaValStr(e.model, "general.architecture")
	if v, ok := llama.ModelMetaValStr(e.model, arch+".pooling_type"); ok {
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil && n > int(llama.PoolingTypeNone) && n <= int(llama.PoolingTypeLast) {
			pooling = llama.PoolingType(n)
		}
	}
	size := min(e.ctxSize, 2048)
	cp := llama.ContextDefaultParams()
	// One cache of size tokens shared by the batch's inputs (unified): a split cache
	// would make llama.cpp cut a batch into equal shares per sequence, and a longer
	// input would then be pooled from its last share only.
	cp.NCtx = uint32(size)
	cp.NBatch, cp.NUbatch = uint32(size), uint32(size)
	cp.NSeqMax = maxEmbedSeqs
	cp.KVUnified = 1
	cp.NThreads, cp.NThreadsBatch = threads, threads
	cp.Embeddings = 1
	cp.PoolingType = pooling
	cp.NoPerf = 1
	lctx, err := llama.InitFromModel(e.model, cp)
	if err != nil || lctx == 0 {
		if err == nil {
			err = errors.New("no context")
		}
		return nil, fmt.Errorf("create the embedding context: %w", err)
	}
	if pool != 0 {
		llama.AttachThreadpool(lctx, uintptr(pool), uintptr(pool))
	}
	mem, _ := llama.GetMemory(lctx)
	return &embedder{lctx: lctx, mem: mem, batch: llama.BatchInit(int32(size), 0, 1),
		nEmbd: int(llama.ModelNEmbd(e.model)), ctxSize: size, pooling: pooling}, nil
}

func (m *embedder) free() {
	_ = llama.BatchFree(m.batch)
	_ = llama.Free(m.lctx)
}

// Embed returns one L2-normalized vector per text (llama-server's default), computed on
// the embedding context in batches of inputs. Texts holding NUL or longer than the
// embedding context are errors naming the input.
func (e *Engine) Embed(ctx context.Context, texts []string) (EmbedResult, error) {
	if e.sched.emb == nil {
		return EmbedResult{}, ErrNoEmbeddings
	}
	job := &embedJob{ctx: ctx, done: make(chan struct{})}
	for i, t := range texts {
		if strings.IndexByte(t, 0) >= 0 {
			return EmbedResult{}, fmt.Errorf("input[%d]: %w", i, ErrNUL)
		}
		toks := llama.Tokenize(e.vocab, t, true, false)
		if len(toks) == 0 {
			return EmbedResult{}, fmt.Errorf("input[%d] is empty", i)
		}
		if len(toks) > e.sched.emb.ctxSize {
			return EmbedResult{}, &ContextExceededError{PromptTokens: len(toks), ContextSize: e.sched.emb.ctxSize + 1}
		}
		job.inputs = append(job.inputs, toks)
		job.res.Tokens += len(toks)
	}
	if err := e.sched.submitEmbed(job); err != nil {
		return EmbedResult{}, err
	}
	<-job.done
	return job.res, job.err
}

func (s *scheduler) submitEmbed(job *embedJob) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(s.embeds) >= maxEmbedJobs {
		s.mu.Unlock()
		return ErrBusy
	}
	s.embeds = append(s.embeds, job)
	s.mu.Unlock()
	s.poke()
	return nil
}

// runEmbeds embeds one batch of the oldest waiting job (on the scheduler's goroutine)
// and reports whether jobs remain.
func (s *scheduler) runEmbeds() bool {
	s.mu.Lock()
	if len(s.embeds) == 0 {
		s.mu.Unlock()
		return false
	}
	job := s.embeds[0]
	s.mu.Unlock()
	if err := job.ctx.Err(); err != nil {
		job.err = err
	} else {
		var vecs [][]float32
		vecs, job.err = s.emb.embedBatch(job.inputs[job.next:])
		job.res.Vectors = append(job.res.Vectors, vecs...)
		job.next += len(vecs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.err != nil || job.next == len(job.inputs) {
		s.embeds = s.embeds[1:]
		close(job.done)
	}
	return len(s.embeds) > 0
}

// embedBatch decodes as many of inputs as one batch holds and returns their pooled
// vectors (at least one input is embedded: each fits the context, Embed checked).
func (m *embedder) embedBatch(inputs [][]llama.Token) ([][]float32, error) {
	_ = llama.MemoryClear(m.mem, true)
	_ = m.batch.Clear()
	n := 0
	for n < len(inputs) && n < maxEmbedSeqs && int(m.batch.NTokens)+len(inputs[n]) <= m.ctxSize {
		seq := []llama.SeqId{llama.SeqId(n)}
		for i, t := range inputs[n] {
			_ = m.batch.Add(t, llama.Pos(i), seq, true)
		}
		n++
	}
	rc, err := llama.Decode(m.lctx, m.batch)
	if err == nil && rc != 0 {
		err = fmt.Errorf("llama_decode returned %d", rc)
	}
	if err != nil {
		return nil, fmt.Errorf("embeddings: %w", err)
	}
	out := make([][]float32, 0, n)
	for i := range n {
		v, err := llama.GetEmbeddingsSeq(m.lctx, llama.SeqId(i), int32(m.nEmbd))
		if err != nil || v == nil {
			return nil, fmt.Errorf("embeddings: llama.cpp pooled no vector (pooling %d)", m.pooling)
		}
		out = append(out, normalize(v))
	}
	return out, nil
}

// normalize copies v scaled to unit Euclidean length (a zero vector stays zero).
func normalize(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if sum == 0 {
		return out
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}
