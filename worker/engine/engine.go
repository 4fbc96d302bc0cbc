// Package engine owns llama.cpp inside a worker process: the loaded model, one context
// with a sequence per parallel request, the scheduler that decodes them all in one batch
// per step, the prompt cache, prompt formatting and sampling.
package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/hybridgroup/yzma/pkg/mtmd"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/worker/chattmpl"
)

// DefaultCtxSize bounds the context of a sequence when the model's training context is
// larger.
const DefaultCtxSize = 4096

// GPU layer settings besides a layer count.
const (
	// GPULayersAll offloads every layer (llama.cpp clamps the count to the model's).
	GPULayersAll = -1
	// allLayers is the count handed to llama.cpp for "all".
	allLayers = 999
)

// ggufMagic starts every GGUF file.
var ggufMagic = []byte("GGUF")

// ErrNotGGUF is matched (errors.Is) when the model file is not a GGUF file.
var ErrNotGGUF = errors.New("not a GGUF file")

// ErrNUL is returned by Prepare for text holding a NUL character, which llama.cpp cannot
// take (it would abort the process).
var ErrNUL = errors.New("the text contains a NUL character (\\u0000), which llama.cpp cannot take: remove it")

// ErrBusy is returned by Generate when every sequence is taken and the wait queue is full.
var ErrBusy = errors.New("all slots busy and the queue is full")

// ErrClosed is returned by Generate once the engine is closing.
var ErrClosed = errors.New("the engine is closed")

// ModelError says why a model file could not be loaded; the worker exits with
// wire.ExitModelLoad on it.
type ModelError struct {
	Path string
	Err  error
}

func (e *ModelError) Error() string { return fmt.Sprintf("model %s: %v", e.Path, e.Err) }
func (e *ModelError) Unwrap() error { return e.Err }

// ContextExceededError says a prompt does not fit in a sequence's context.
type ContextExceededError struct {
	PromptTokens int
	ContextSize  int
}

func (e *ContextExceededError) Error() string {
	return fmt.Sprintf("the prompt is %d tokens but the context holds %d (%d for the prompt plus at least one generated token): shorten the prompt or start the worker with a larger --ctx-size",
		e.PromptTokens, e.ContextSize, e.ContextSize-1)
}

// Config sets up an Engine.
type Config struct {
	ModelPath string
	LibDir    string // llama.cpp library folder; "" = llamaruntime.Locate's search
	CtxSize   int    // tokens per sequence; 0 = the model's training context, at most DefaultCtxSize
	Threads   int    // 0 = defaultThreads: 1 for a small model, else the physical cores
	Parallel  int    // sequences decoded together; 0 = 1
	Queue     int    // requests that may wait for a sequence; beyond it Generate says ErrBusy
	// GPULayers is how many layers go to the GPU: 0 = none (CPU only), GPULayersAll =
	// every layer. "auto" is resolved by the caller (see the worker), which knows the
	// devices and the estimate.
	GPULayers int
	// Embeddings adds a second context for /v1/embeddings (pooling from the model,
	// mean when it names none).
	Embeddings bool
	// Projector is the model's multimodal projector (an mmproj GGUF), for images in
	// chats; "" = text only. It needs the runtime's multimodal library (see
	// llamaruntime.InstallVision).
	Projector string
	// Progress receives the model load progress, 0..1. It runs on the loading thread.
	Progress func(float32)
}

// Engine is a loaded model with its scheduler. Its methods are safe for concurrent use.
type Engine struct {
	model    llama.Model
	vocab    llama.Vocab
	bos      llama.Token
	jinja    *chattmpl.Template // the model's own chat template, rendered with Jinja
	template string             // the same template, when llama.cpp's built-ins apply it
	// templateUnusable: the model declares a template neither Jinja nor llama.cpp
	// can apply.
	templateUnusable bool
	bosText, eosText string // the texts of BOS and EOS, for templates that write them
	ctxSize          int    // tokens per sequence
	threads          int
	nBatch           int // tokens per decode step
	parallel         int
	queueMax         int
	gpuLayers        int // layers offloaded, as asked of llama.cpp (clamped to the model's)
	modelSize        int64
	kvBytesPerToken  int64
	nSWA             int // the model's sliding attention window; 0 = none

	mctx   mtmd.Context // the projector's context; 0 = text only (vision.go)
	marker string       // the text that stands for an image in a prompt

	sched     *scheduler
	freeModel sync.Once
}

// CheckModelFile checks that path is a readable regular GGUF file without loading it,
// so a wrong file fails in milliseconds with a reason instead of deep inside llama.cpp.
// A FIFO or device named .gguf is refused before it is opened (opening one blocks).
func CheckModelFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &ModelError{Path: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return &ModelError{Path: path, Err: fmt.Errorf("%w: it is not a regular file (%s); name a .gguf file", ErrNotGGUF, fi.Mode().Type())}
	}
	f, err := os.Open(path)
	if err != nil {
		return &ModelError{Path: path, Err: err}
	}
	defer f.Close()
	magic := make([]byte, len(ggufMagic))
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, ggufMagic) {
		return &ModelError{Path: path, Err: fmt.Errorf("%w (it does not start with the GGUF magic bytes; download a .gguf model)", ErrNotGGUF)}
	}
	return nil
}

// Load loads the llama.cpp runtime (once per process) and the model, creates one context
// with cfg.Parallel sequences and starts the scheduler. Errors match
// llamaruntime.ErrMissing, ErrNotGGUF, or are a *ModelError.
func Load(cfg Config) (*Engine, error) {
	if err := CheckModelFile(cfg.ModelPath); err != nil {
		return nil, err
	}
	if _, err := llamaruntime.Load(cfg.LibDir); err != nil {
		return nil, err
	}
	fi, err := os.Stat(cfg.ModelPath)
	if err != nil {
		return nil, &ModelError{Path: cfg.ModelPath, Err: err}
	}

	mp := llama.ModelDefaultParams()
	gpuLayers := cfg.GPULayers
	switch {
	case gpuLayers == 0:
		// No device list at all: with one naming the CPU, llama.cpp would build a second
		// CPU backend, and with a GPU runtime it would still send big matrix products
		// to the GPU.
		mp.SetCPUOnly()
	case gpuLayers < 0:
		mp.NGpuLayers = allLayers
	default:
		mp.NGpuLayers = int32(gpuLayers)
	}
	if cfg.Progress != nil {
		progress := cfg.Progress
		mp.SetProgressCallback(func(p float32, _ uintptr) uint8 {
			progress(p)
			return 1 // go on loading
		})
	}
	model, err := llama.ModelLoadFromFile(cfg.ModelPath, mp)
	if err != nil || model == 0 {
		if err == nil {
			err = errors.New("llama.cpp could not load it")
		}
		return nil, &ModelError{Path: cfg.ModelPath, Err: fmt.Errorf("llama.cpp refused it: %w", err)}
	}

	e := &Engine{
		model:     model,
		vocab:     llama.ModelGetVocab(model),
		parallel:  max(cfg.Parallel, 1),
		queueMax:  max(cfg.Queue, 0),
		modelSize: fi.Size(),
	}
	// Counted as llama.cpp counts n_gpu_layers: the blocks, then the output layer.
	nLayers := int(llama.ModelNLayer(model))
	e.gpuLayers = min(max(gpuLayers, 0), nLayers+1)
	if gpuLayers < 0 {
		e.gpuLayers = nLayers + 1
	}
	e.bos = llama.VocabBOS(e.vocab)
	e.nSWA = int(llama.ModelNSWA(model))
	// Probe the model's template once, so an unusable one is known (and logged) at load
	// rather than silently replaced on every request.
	if tmpl := llama.ModelChatTemplate(model, ""); tmpl != "" {
		if t, err := chattmpl.Parse(tmpl); err == nil {
			e.jinja = t
		}
		if _, ok := applyTemplate(tmpl, []Message{{Role: "user", Content: "hi"}}); ok {
			e.template = tmpl
		}
		e.templateUnusable = e.jinja == nil && e.template == ""
	}
	e.bosText, e.eosText = tokenText(e.vocab, e.bos), tokenText(e.vocab, llama.VocabEOS(e.vocab))
	e.ctxSize = cfg.CtxSize
	if e.ctxSize <= 0 {
		e.ctxSize = min(int(llama.ModelNCtxTrain(model)), DefaultCtxSize)
		if e.ctxSize <= 0 {
			e.ctxSize = DefaultCtxSize
		}
	}
	// K and V, f16, for every layer's key/value heads.
	if heads := int64(llama.ModelNHead(model)); heads > 0 {
		kvEmbd := int64(llama.ModelNEmbd(model)) / heads * int64(llama.ModelNHeadKV(model))
		e.kvBytesPerToken = 2 * 2 * int64(nLayers) * kvEmbd
	}
	e.nBatch = min(e.ctxSize*e.parallel, 512)
	threads := int32(cfg.Threads)
	if threads <= 0 {
		threads = defaultThreads(llama.ModelSize(model))
	}
	e.threads = int(threads)

	if cfg.Projector != "" {
		if err := e.loadProjector(cfg.Projector, cfg.LibDir); err != nil {
			llama.ModelFree(model)
			return nil, err
		}
	}
	lctx, pool, err := e.newContext(threads)
	if err != nil {
		e.freeProjector()
		llama.ModelFree(model)
		return nil, &ModelError{Path: cfg.ModelPath, Err: err}
	}
	var emb *embedder
	if cfg.Embeddings {
		if emb, err = e.newEmbedder(threads, pool); err != nil {
			_ = llama.Free(lctx)
			llama.ThreadpoolFree(pool)
			e.freeProjector()
			llama.ModelFree(model)
			return nil, &ModelError{Path: cfg.ModelPath, Err: err}
		}
	}
	e.sched = newScheduler(e, lctx, pool)
	e.sched.emb = emb
	go e.sched.run()
	return e, nil
}

// newContext creates the one context: a KV cache of ctxSize tokens for each of the
// parallel sequences, kept apart (not unified), so a sequence's attention reads only its
// own tokens, as llama-server's slots do. Its CPU work runs on a persistent thread pool
// (also llama-server's way): without one, ggml starts and joins its threads for every
// decode step, and on a small machine those thread starts cost 5–10% of decode speed
// and wake enough threads to get in the way of the HTTP side.
func (e *Engine) newContext(threads int32) (llama.Context, llama.Threadpool, error) {
	cp := llama.ContextDefaultParams()
	cp.NCtx = uint32(e.ctxSize * e.parallel)
	cp.NBatch = uint32(e.nBatch)
	cp.NUbatch = uint32(e.nBatch)
	cp.NSeqMax = uint32(e.parallel)
	cp.KVUnified = 0
	cp.NThreads = threads
	cp.NThreadsBatch = threads
	cp.NoPerf = 1
	lctx, err := llama.InitFromModel(e.model, cp)
	if err != nil || lctx == 0 {
		if err == nil {
			err = errors.New("no context")
		}
		return 0, 0, fmt.Errorf("create a llama.cpp context of %d sequences × %d tokens: %w", e.parallel, e.ctxSize, err)
	}
	params := llama.ThreadpoolParamsDefault(threads)
	pool, err := llama.ThreadpoolNew(&params)
	if err != nil && !errors.Is(err, llama.ErrNoThreadpool) {
		llama.Free(lctx)
		return 0, 0, fmt.Errorf("create a thread pool of %d threads: %w", threads, err)
	}
	if pool != 0 { // a build without a CPU pool keeps ggml's own threads
		llama.AttachThreadpool(lctx, uintptr(pool), uintptr(pool))
	}
	// llama.cpp may round a sequence's share; never plan beyond what it holds.
	if per := int(llama.NCtxSeq(lctx)); per > 0 && per < e.ctxSize {
		e.ctxSize = per
	}
	// Warm up as llama-server does, so the first request pays no one-off setup cost.
	if err := llama.Warmup(lctx, e.model); err != nil {
		llama.Free(lctx)
		llama.ThreadpoolFree(pool)
		return 0, 0, fmt.Errorf("warm up: %w", err)
	}
	return lctx, pool, nil
}

// ContextSize is the context of one sequence, in tokens.
func (e *Engine) ContextSize() int { return e.ctxSize }

// Threads is the number of CPU threads the context decodes with.
func (e *Engine) Threads() int { return e.threads }

// GPULayers is the number of layers offloaded to the GPU.
func (e *Engine) GPULayers() int { return e.gpuLayers }

// smallModelBytes is the size below which a token's work is too small to share: the
// threads' barrier waits cost more than they save. Measured on stories260K (1 MB), 2
// cores: 1 thread 1450 tok/s; 2 threads 500–1000 tok/s when idle and 25–70 tok/s when
// another process keeps a core busy (llama.cpp's threads spin while they wait).
const smallModelBytes = 256 << 20

// defaultThreads picks the context's threads when the user gave none: one for a small
// model, else the physical cores. All sequences share the one context, so a single
// stream on a --parallel 8 worker gets every core.
func defaultThreads(modelBytes uint64) int32 {
	if modelBytes < smallModelBytes {
		return 1
	}
	return max(1, llama.Threads())
}

// Parallel is the number of sequences decoded together.
func (e *Engine) Parallel() int { return e.parallel }

// Capacity is how many requests the engine holds at once: running and queued.
func (e *Engine) Capacity() int { return e.parallel + e.queueMax }

// Stats is a snapshot of the engine's load and KV cache.
type Stats struct {
	Active     int   // sequences generating or reading a prompt
	Queued     int   // requests waiting for a sequence
	KVTokens   int   // tokens held in the KV cache (prompt cache included)
	KVCapacity int   // tokens the KV cache holds: ContextSize × Parallel
	KVBytes    int64 // the KV cache's size in bytes (f16 K and V)
	// CachedPromptTokens counts prompt tokens served from the cache since start;
	// PromptTokens all prompt tokens.
	CachedPromptTokens int64
	PromptTokens       int64
}

// Stats reports the current load and KV cache use.
func (e *Engine) Stats() Stats {
	st := e.sched.stats()
	st.KVCapacity = e.ctxSize * e.parallel
	st.KVBytes = int64(st.KVCapacity) * e.kvBytesPerToken
	return st
}

// Active is the number of sequences in use.
func (e *Engine) Active() int { return e.sched.stats().Active }

// Queued is the number of requests waiting for a sequence.
func (e *Engine) Queued() int { return e.sched.stats().Queued }

// ModelSize is the model file's size in bytes.
func (e *Engine) ModelSize() int64 { return e.modelSize }

// Chat template sources, as ChatTemplate reports them.
const (
	TemplateJinja    = "jinja"    // the model's own template, rendered with a Jinja engine
	TemplateModel    = "model"    // the model's own template, applied by llama.cpp's built-ins
	TemplateFallback = "fallback" // the model has none: the fallback transcript
	// TemplateUnusable: the model's template is one neither Jinja nor llama.cpp can
	// apply, so chats get the fallback transcript.
	TemplateUnusable = "fallback (the model's template could not be applied)"
)

// ChatTemplate says which prompt format chats get: TemplateModel, TemplateFallback or
// TemplateUnusable.
func (e *Engine) ChatTemplate() string {
	switch {
	case e.jinja != nil:
		return TemplateJinja
	case e.template != "":
		return TemplateModel
	case e.templateUnusable:
		return TemplateUnusable
	}
	return TemplateFallback
}

// Close stops taking requests, waits for those in flight to end (or ctx to end) and
// frees llama.cpp's memory. The caller ends generations first (the worker cancels their
// contexts), so the wait is about one decode step.
func (e *Engine) Close(ctx context.Context) error {
	if err := e.sched.close(ctx); err != nil {
		return fmt.Errorf("close engine: requests still running: %w", err)
	}
	e.freeModel.Do(func() {
		e.freeProjector()
		llama.ModelFree(e.model)
	})
	return nil
}
