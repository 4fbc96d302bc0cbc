// Package engine owns llama.cpp inside a worker process: the loaded model, its inference
// slots (one llama.cpp context each), prompt formatting and the token generation loop.
package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// DefaultCtxSize bounds the context of a slot when the model's training context is larger.
const DefaultCtxSize = 4096

// ggufMagic starts every GGUF file.
var ggufMagic = []byte("GGUF")

// ErrNotGGUF is matched (errors.Is) when the model file is not a GGUF file.
var ErrNotGGUF = errors.New("not a GGUF file")

// ErrNUL is returned by Prepare for text holding a NUL character, which llama.cpp cannot
// take (it would abort the process).
var ErrNUL = errors.New("the text contains a NUL character (\\u0000), which llama.cpp cannot take: remove it")

// ErrBusy is returned by Acquire when every slot is taken and the wait queue is full.
var ErrBusy = errors.New("all slots busy and the queue is full")

// ModelError says why a model file could not be loaded; the worker exits with
// wire.ExitModelLoad on it.
type ModelError struct {
	Path string
	Err  error
}

func (e *ModelError) Error() string { return fmt.Sprintf("model %s: %v", e.Path, e.Err) }
func (e *ModelError) Unwrap() error { return e.Err }

// ContextExceededError says a prompt does not fit in a slot's context.
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
	CtxSize   int    // tokens per slot; 0 = the model's training context, at most DefaultCtxSize
	Threads   int    // 0 = defaultThreads: 1 for a small model, else the physical cores shared among slots
	Parallel  int    // slots; 0 = 1
	Queue     int    // requests that may wait for a slot; beyond it Acquire says ErrBusy
	// Progress receives the model load progress, 0..1. It runs on the loading thread.
	Progress func(float32)
}

// Engine is a loaded model with its slots. Its methods are safe for concurrent use.
type Engine struct {
	model    llama.Model
	vocab    llama.Vocab
	bos      llama.Token
	template string // the model's own chat template; "" = the fallback transcript
	// templateUnusable: the model declares a template llama.cpp cannot apply (Jinja-only).
	templateUnusable bool
	ctxSize          int
	threads          int // per slot
	nBatch           int
	parallel         int
	queueMax         int32
	modelSize        int64

	slots   chan *Slot
	all     []*Slot
	waiting atomic.Int32
	closed  atomic.Bool
}

// CheckModelFile checks that path is a readable GGUF file without loading it, so a wrong
// file fails in milliseconds with a reason instead of deep inside llama.cpp.
func CheckModelFile(path string) error {
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

// Load loads the llama.cpp runtime (once per process) and the model, and prepares
// cfg.Parallel slots. Errors match llamaruntime.ErrMissing, ErrNotGGUF, or are a *ModelError.
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
	mp.SetCPUOnly()
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
		queueMax:  int32(max(cfg.Queue, 0)),
		modelSize: fi.Size(),
	}
	e.bos = llama.VocabBOS(e.vocab)
	// Probe the model's template once, so an unusable one is known (and logged) at load
	// rather than silently replaced on every request.
	if tmpl := llama.ModelChatTemplate(model, ""); tmpl != "" {
		if _, ok := applyTemplate(tmpl, []Message{{Role: "user", Content: "hi"}}); ok {
			e.template = tmpl
		} else {
			e.templateUnusable = true
		}
	}
	e.ctxSize = cfg.CtxSize
	if e.ctxSize <= 0 {
		e.ctxSize = min(int(llama.ModelNCtxTrain(model)), DefaultCtxSize)
		if e.ctxSize <= 0 {
			e.ctxSize = DefaultCtxSize
		}
	}
	e.nBatch = min(e.ctxSize, 512)
	threads := int32(cfg.Threads)
	if threads <= 0 {
		threads = defaultThreads(llama.ModelSize(model), e.parallel)
	}
	e.threads = int(threads)

	e.slots = make(chan *Slot, e.parallel)
	for i := 0; i < e.parallel; i++ {
		s, err := e.newSlot(threads)
		if err != nil {
			e.free()
			return nil, &ModelError{Path: cfg.ModelPath, Err: err}
		}
		e.all = append(e.all, s)
		e.slots <- s
	}
	return e, nil
}

func (e *Engine) newSlot(threads int32) (*Slot, error) {
	cp := llama.ContextDefaultParams()
	cp.NCtx = uint32(e.ctxSize)
	cp.NBatch = uint32(e.nBatch)
	cp.NUbatch = uint32(e.nBatch)
	cp.NSeqMax = 1
	cp.NThreads = threads
	cp.NThreadsBatch = threads
	cp.NoPerf = 1
	lctx, err := llama.InitFromModel(e.model, cp)
	if err != nil || lctx == 0 {
		if err == nil {
			err = errors.New("no context")
		}
		return nil, fmt.Errorf("create a llama.cpp context of %d tokens: %w", e.ctxSize, err)
	}
	mem, err := llama.GetMemory(lctx)
	if err != nil {
		llama.Free(lctx)
		return nil, fmt.Errorf("context memory: %w", err)
	}
	// Warm up as llama-server does, so the first request pays no one-off setup cost.
	if err := llama.Warmup(lctx, e.model); err != nil {
		llama.Free(lctx)
		return nil, fmt.Errorf("warm up: %w", err)
	}
	return &Slot{e: e, lctx: lctx, mem: mem, piece: make([]byte, 256), text: make([]byte, 0, 4096)}, nil
}

// ContextSize is the context of one slot, in tokens.
func (e *Engine) ContextSize() int { return e.ctxSize }

// Threads is the number of CPU threads each slot decodes with.
func (e *Engine) Threads() int { return e.threads }

// smallModelBytes is the size below which a token's work is too small to share: the
// threads' barrier waits cost more than they save. Measured on stories260K (1 MB), 2
// cores: 1 thread 1450 tok/s; 2 threads 500–1000 tok/s when idle and 25–70 tok/s when
// another process keeps a core busy (llama.cpp's threads spin while they wait).
const smallModelBytes = 256 << 20

// defaultThreads picks threads per slot when the user gave none: one for a small model;
// otherwise the physical cores, shared among the slots so they do not oversubscribe them.
func defaultThreads(modelBytes uint64, slots int) int32 {
	if modelBytes < smallModelBytes {
		return 1
	}
	return max(1, llama.Threads()/int32(max(slots, 1)))
}

// Parallel is the number of slots.
func (e *Engine) Parallel() int { return e.parallel }

// Active is the number of slots in use.
func (e *Engine) Active() int { return e.parallel - len(e.slots) }

// Queued is the number of requests waiting for a slot.
func (e *Engine) Queued() int { return int(e.waiting.Load()) }

// ModelSize is the model file's size in bytes.
func (e *Engine) ModelSize() int64 { return e.modelSize }

// Chat template sources, as ChatTemplate reports them.
const (
	TemplateModel    = "model"    // the model's own template, applied by llama.cpp
	TemplateFallback = "fallback" // the model has none: the fallback transcript
	// TemplateUnusable: the model's template is one llama.cpp cannot apply (Jinja-only),
	// so chats get the fallback transcript.
	TemplateUnusable = "fallback (the model's template is not one llama.cpp can apply)"
)

// ChatTemplate says which prompt format chats get: TemplateModel, TemplateFallback or
// TemplateUnusable.
func (e *Engine) ChatTemplate() string {
	switch {
	case e.template != "":
		return TemplateModel
	case e.templateUnusable:
		return TemplateUnusable
	}
	return TemplateFallback
}

// Acquire takes a free slot, waiting in the bounded queue when none is free. It returns
// ErrBusy at once when the queue is full, and ctx's error when ctx ends first.
func (e *Engine) Acquire(ctx context.Context) (*Slot, error) {
	select {
	case s := <-e.slots:
		return s, nil
	default:
	}
	if e.waiting.Add(1) > e.queueMax {
		e.waiting.Add(-1)
		return nil, ErrBusy
	}
	defer e.waiting.Add(-1)
	select {
	case s := <-e.slots:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Release hands the slot back.
func (s *Slot) Release() { s.e.slots <- s }

// Close waits for every slot to come back (or ctx to end) and frees llama.cpp's memory.
func (e *Engine) Close(ctx context.Context) error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	for range e.all {
		select {
		case <-e.slots:
		case <-ctx.Done():
			return fmt.Errorf("close engine: slots still busy: %w", ctx.Err())
		}
	}
	e.free()
	return nil
}

func (e *Engine) free() {
	for _, s := range e.all {
		llama.Free(s.lctx)
	}
	e.all = nil
	llama.ModelFree(e.model)
}
