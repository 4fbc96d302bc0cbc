package models

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	gguf "github.com/gpustack/gguf-parser-go"
)

// This file answers "will it fit" with gpustack/gguf-parser-go's llama.cpp estimator,
// behind a small API of our own: EstimateMemory for a given offload, FitLayers for the
// most layers a device's free memory holds (the worker's --gpu-layers auto). Both read
// only the file's header, never the weights, and need neither Fyne nor llama.cpp.

// DefaultCtxSize is the context a worker gives each sequence when --ctx-size is not set
// and the model was trained for more (worker/engine.DefaultCtxSize; a test keeps the two
// in step).
const DefaultCtxSize = 4096

// batchSize is the worker's n_batch and n_ubatch (worker/engine: min(ctx, 512)); the
// estimator itself takes min(context, batch) tokens per step.
const batchSize = 512

// EstimateOptions is how a worker would run the model.
type EstimateOptions struct {
	// CtxSize is the context of one sequence in tokens (the worker's --ctx-size);
	// 0 = the worker's default: the model's training context, at most DefaultCtxSize.
	CtxSize int
	// Parallel is the sequences decoded at once (the worker's --parallel); 0 = 1. The
	// worker runs one llama.cpp context of CtxSize × Parallel tokens shared by the
	// sequences, as llama-server does, so the KV cache grows with both.
	Parallel int
	// GPULayers is the layers offloaded to the device, counted as llama.cpp's
	// n_gpu_layers counts them (the blocks, then the output layer); -1 = all of them.
	// FitLayers ignores it.
	GPULayers int
}

// Estimate is the memory a worker needs for one model and options.
type Estimate struct {
	Layers    int // offloadable layers: the blocks plus the output layer ("all 33 layers")
	GPULayers int // layers offloaded in this estimate, 0..Layers
	CtxSize   int // tokens per sequence
	Parallel  int
	// RAMBytes is host memory with GPULayers offloaded: the weights of the layers left
	// on the CPU (mapped pages are memory all the same: a model whose weights do not
	// stay resident crawls), their KV cache, the compute buffer, the vocabulary and the
	// output buffer.
	RAMBytes  uint64
	VRAMBytes uint64 // device memory with GPULayers offloaded (weights, KV cache, compute buffer)
	// CPUOnlyRAM is RAMBytes with nothing offloaded, FullOffloadVRAM VRAMBytes with all
	// Layers offloaded: the two ends the Models screen shows.
	CPUOnlyRAM      uint64
	FullOffloadVRAM uint64
}

// FullOffload reports whether every layer is offloaded.
func (e Estimate) FullOffload() bool { return e.Layers > 0 && e.GPULayers >= e.Layers }

// ErrNotLanguageModel means a GGUF file holds no language model a worker can serve (a
// vision projector, a LoRA adapter, an importance matrix, a diffusion model).
var ErrNotLanguageModel = errors.New("not a language model")

// EstimateMemory estimates the memory a worker needs for the model at path with opt.
func EstimateMemory(path string, opt EstimateOptions) (Estimate, error) {
	m, err := openEstimator(path, opt)
	if err != nil {
		return Estimate{}, err
	}
	return m.estimate(opt.GPULayers)
}

// FitLayers returns the most layers whose device memory fits in freeDeviceBytes less a
// safety margin (see DeviceBudget), with the estimate for that many: all of them when
// the model fits, 0 when not even one layer does. opt.GPULayers is ignored.
func FitLayers(path string, opt EstimateOptions, freeDeviceBytes uint64) (layers int, est Estimate, err error) {
	m, err := openEstimator(path, opt)
	if err != nil {
		return 0, Estimate{}, err
	}
	budget := DeviceBudget(freeDeviceBytes)
	// Device memory grows with the layers offloaded, so the first count that does not
	// fit ends the search; a handful of estimates instead of one per layer.
	var failed error
	n := sort.Search(m.layers+1, func(k int) bool {
		_, vram, err := m.run(k)
		if err != nil {
			failed = err
			return true
		}
		return vram > budget
	})
	if failed != nil {
		return 0, Estimate{}, failed
	}
	layers = max(n-1, 0)
	est, err = m.estimate(layers)
	return layers, est, err
}

// DeviceBudget is the device memory FitLayers lets a model take out of free bytes. It
// leaves 512 MiB plus 5% unused: the estimate leaves out the backend's own allocations
// (cuBLAS and Vulkan workspaces, pipelines, pinned staging buffers), it errs by some
// percent on graphs it models loosely, and whatever else runs on the card (a desktop,
// a browser) may take more while the model loads. A model that fails to load is far
// worse than one that runs a layer or two slower; llama.cpp's own --fit leaves 1 GiB.
func DeviceBudget(free uint64) uint64 {
	reserve := uint64(512<<20) + free/20
	if free <= reserve {
		return 0
	}
	return free - reserve
}

// estimator is one parsed header and the run options, ready to estimate offloads.
type estimator struct {
	gf       *gguf.GGUFFile
	layers   int
	ctx, par int
}

// openEstimator checks and parses path's header. Only regular files are opened: a
// FIFO named .gguf would block the open forever, a device would stream without end.
func openEstimator(path string, opt EstimateOptions) (*estimator, error) {
	if opt.CtxSize < 0 || opt.Parallel < 0 {
		return nil, fmt.Errorf("estimate %s: context %d and parallel %d must not be negative", path, opt.CtxSize, opt.Parallel)
	}
	// A split model (NAME-00001-of-00003.gguf) is read from all its parts.
	parts := gguf.CompleteShardGGUFFilename(path)
	if parts == nil {
		parts = []string{path}
	}
	for _, p := range parts {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("estimate %s: %w", path, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("estimate %s: %s, not a file: %w: choose a .gguf model file", p, fileKind(st.Mode()), ErrNotGGUF)
		}
	}
	gf, err := parseHeader(path)
	if err != nil {
		return nil, fmt.Errorf("estimate %s: %w (%w: is it a complete .gguf download?)", path, err, ErrNotGGUF)
	}
	m := &estimator{gf: gf, ctx: opt.CtxSize, par: max(opt.Parallel, 1)}
	arch, err := guard(gf.Architecture)
	if err != nil {
		return nil, fmt.Errorf("estimate %s: %w (%w)", path, err, ErrNotGGUF)
	}
	if arch.Type != "model" {
		return nil, fmt.Errorf("estimate %s: a %s %s: %w: choose the language model's .gguf", path, arch.Architecture, arch.Type, ErrNotLanguageModel)
	}
	if arch.BlockCount == 0 || arch.BlockCount > math.MaxInt32 {
		return nil, fmt.Errorf("estimate %s: block count %d: %w", path, arch.BlockCount, ErrNotGGUF)
	}
	m.layers = int(arch.BlockCount) + 1 // llama.cpp counts the output layer too
	if m.ctx == 0 {
		m.ctx = DefaultCtxSize
		if train := arch.MaximumContextLength; train > 0 && train < DefaultCtxSize {
			m.ctx = int(train)
		}
	}
	if uint64(m.ctx)*uint64(m.par) > math.MaxInt32 {
		return nil, fmt.Errorf("estimate %s: %d × %d tokens is more than llama.cpp can hold: lower the context or parallel", path, m.ctx, m.par)
	}
	return m, nil
}

// fileKind names what a non-regular file is, for people.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "something else"
}

// parseHeader reads the metadata and tensor table, skipping the large arrays (the
// vocabulary, the merges) whose lengths are all the estimate needs.
func parseHeader(path string) (gf *gguf.GGUFFile, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged header: %v", r)
		}
	}()
	return gguf.ParseGGUFFile(path, gguf.SkipLargeMetadata())
}

// guard runs f, turning the panic the library raises on a header whose values have the
// wrong types into an error: a damaged file must cost an error, not the app.
func guard[T any](f func() T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged header: %v", r)
		}
	}()
	return f(), nil
}

// estimate is the Estimate with gpuLayers offloaded (-1 = all).
func (m *estimator) estimate(gpuLayers int) (Estimate, error) {
	if gpuLayers < 0 || gpuLayers > m.layers {
		gpuLayers = m.layers
	}
	e := Estimate{Layers: m.layers, GPULayers: gpuLayers, CtxSize: m.ctx, Parallel: m.par}
	var err error
	if e.RAMBytes, e.VRAMBytes, err = m.run(gpuLayers); err != nil {
		return Estimate{}, err
	}
	if e.CPUOnlyRAM, _, err = m.run(0); err != nil {
		return Estimate{}, err
	}
	if _, e.FullOffloadVRAM, err = m.run(m.layers); err != nil {
		return Estimate{}, err
	}
	return e, nil
}

// run asks the library for one offload: one context of ctx × parallel tokens with
// parallel sequences, f16 KV cache offloaded with its layers, flash attention off (its
// compute buffer is the larger one), batches as the worker's, weights mapped.
func (m *estimator) run(gpuLayers int) (ram, vram uint64, err error) {
	item, err := guard(func() gguf.LLaMACppRunEstimateSummaryItem {
		e := m.gf.EstimateLLaMACppRun(
			gguf.WithLLaMACppContextSize(int32(m.ctx*m.par)),
			gguf.WithParallelSize(int32(m.par)),
			gguf.WithLLaMACppLogicalBatchSize(batchSize),
			gguf.WithLLaMACppPhysicalBatchSize(batchSize),
			gguf.WithLLaMACppOffloadLayers(uint64(gpuLayers)),
		)
		// mmap false: the library then counts the host's weights in RAM, which is
		// what the CPU's layers take once touched (see Estimate.RAMBytes); the device
		// figure is the same either way.
		return e.SummarizeItem(false, 0, 0)
	})
	if err != nil {
		return 0, 0, err
	}
	ram = uint64(item.RAM.NonUMA)
	if len(item.VRAMs) > 0 && gpuLayers > 0 {
		vram = uint64(item.VRAMs[0].NonUMA)
	}
	return ram, vram, nil
}

// EstimateCache remembers estimates per file version (path, size, modification time)
// and options, so screens can ask again on every repaint. Errors are remembered too: a
// damaged file stays damaged until it changes. Safe for concurrent use.
type EstimateCache struct {
	mu sync.Mutex
	m  map[estimateKey]estimateResult
}

type estimateKey struct {
	path  string
	size  int64
	mtime time.Time
	opt   EstimateOptions
}

type estimateResult struct {
	est Estimate
	err error
}

// maxCachedEstimates bounds the cache; past it the cache starts afresh (typing context
// sizes one digit at a time makes a new key per keystroke).
const maxCachedEstimates = 256

// Estimate is EstimateMemory, cached.
func (c *EstimateCache) Estimate(path string, opt EstimateOptions) (Estimate, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Estimate{}, fmt.Errorf("estimate %s: %w", path, err)
	}
	key := estimateKey{path: path, size: st.Size(), mtime: st.ModTime(), opt: opt}
	c.mu.Lock()
	r, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return r.est, r.err
	}
	est, err := EstimateMemory(path, opt)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedEstimates {
		c.m = map[estimateKey]estimateResult{}
	}
	c.m[key] = estimateResult{est, err}
	c.mu.Unlock()
	return est, err
}
