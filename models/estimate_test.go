package models

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

func TestEstimateTestModel(t *testing.T) {
	model := testenv.Model(t)
	st, err := os.Stat(model)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cpu, err := EstimateMemory(model, EstimateOptions{})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stories260K, default options: %+v in %v", cpu, took)
	// 5 blocks plus the output layer; trained for 2048 tokens, under the worker's cap.
	if cpu.Layers != 6 || cpu.GPULayers != 0 || cpu.CtxSize != 2048 || cpu.Parallel != 1 {
		t.Fatalf("layers/offloaded/ctx/parallel = %d/%d/%d/%d, want 6/0/2048/1", cpu.Layers, cpu.GPULayers, cpu.CtxSize, cpu.Parallel)
	}
	if cpu.RAMBytes != cpu.CPUOnlyRAM || cpu.RAMBytes <= uint64(st.Size()) || cpu.VRAMBytes != 0 {
		t.Fatalf("CPU only: RAM %d (CPU-only %d) must hold the %d-byte file, VRAM %d must be 0",
			cpu.RAMBytes, cpu.CPUOnlyRAM, st.Size(), cpu.VRAMBytes)
	}
	if cpu.FullOffloadVRAM == 0 || cpu.FullOffload() {
		t.Fatalf("full offload VRAM %d, FullOffload %v", cpu.FullOffloadVRAM, cpu.FullOffload())
	}

	all, err := EstimateMemory(model, EstimateOptions{GPULayers: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !all.FullOffload() || all.GPULayers != 6 || all.VRAMBytes != cpu.FullOffloadVRAM || all.RAMBytes >= cpu.RAMBytes {
		t.Fatalf("all layers: %+v; want VRAM %d and less RAM than CPU only (%d)", all, cpu.FullOffloadVRAM, cpu.RAMBytes)
	}
	if took > time.Second {
		t.Errorf("an estimate took %v; the worker's --gpu-layers auto and the UI need it cheap", took)
	}
}

func TestEstimateGrowsWithContextAndParallel(t *testing.T) {
	model := testenv.Model(t)
	check := func(what string, opts []EstimateOptions) {
		t.Helper()
		var prev Estimate
		for i, o := range opts {
			e, err := EstimateMemory(model, o)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && (e.CPUOnlyRAM <= prev.CPUOnlyRAM || e.FullOffloadVRAM <= prev.FullOffloadVRAM) {
				t.Errorf("%s: %+v → RAM %d, VRAM %d; not above %+v → RAM %d, VRAM %d",
					what, o, e.CPUOnlyRAM, e.FullOffloadVRAM, opts[i-1], prev.CPUOnlyRAM, prev.FullOffloadVRAM)
			}
			prev = e
		}
	}
	check("context", []EstimateOptions{{CtxSize: 256}, {CtxSize: 512}, {CtxSize: 1024}, {CtxSize: 2048}, {CtxSize: 8192}})
	check("parallel", []EstimateOptions{{CtxSize: 512, Parallel: 1}, {CtxSize: 512, Parallel: 2}, {CtxSize: 512, Parallel: 4}})

	// The worker runs one context of ctx × parallel tokens: 2 × 512 costs what 1 × 1024 does.
	a, err := EstimateMemory(model, EstimateOptions{CtxSize: 512, Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	b, err := EstimateMemory(model, EstimateOptions{CtxSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if a.CPUOnlyRAM < b.CPUOnlyRAM*9/10 || a.CPUOnlyRAM > b.CPUOnlyRAM*11/10 {
		t.Errorf("512 × 2 needs %d bytes, 1024 × 1 %d: the KV cache must cover ctx × parallel", a.CPUOnlyRAM, b.CPUOnlyRAM)
	}
}

func TestFitLayers(t *testing.T) {
	model := testenv.Model(t)
	opt := EstimateOptions{CtxSize: 1024}
	full, err := EstimateMemory(model, EstimateOptions{CtxSize: 1024, GPULayers: -1})
	if err != nil {
		t.Fatal(err)
	}

	n, est, err := FitLayers(model, opt, 64<<30)
	if err != nil || n != full.Layers || !est.FullOffload() || est.VRAMBytes != full.VRAMBytes {
		t.Fatalf("64 GiB free: %d layers, %+v, %v; want all %d", n, est, err, full.Layers)
	}
	n, est, err = FitLayers(model, opt, 0)
	if err != nil || n != 0 || est.VRAMBytes != 0 || est.RAMBytes != est.CPUOnlyRAM {
		t.Fatalf("nothing free: %d layers, %+v, %v; want 0", n, est, err)
	}
	// Free memory just short of the full offload: not all of it, and nothing over budget.
	mid, err := EstimateMemory(model, EstimateOptions{CtxSize: 1024, GPULayers: 3})
	if err != nil {
		t.Fatal(err)
	}
	free := freeFor(mid.VRAMBytes)
	n, est, err = FitLayers(model, opt, free)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes free (budget %d): %d of %d layers, %d bytes", free, DeviceBudget(free), n, full.Layers, est.VRAMBytes)
	if n < 3 || n >= full.Layers || est.GPULayers != n || est.VRAMBytes > DeviceBudget(free) {
		t.Fatalf("budget %d: %d layers using %d bytes; want 3..%d within the budget", DeviceBudget(free), n, est.VRAMBytes, full.Layers-1)
	}
	next, err := EstimateMemory(model, EstimateOptions{CtxSize: 1024, GPULayers: n + 1})
	if err != nil {
		t.Fatal(err)
	}
	if next.VRAMBytes <= DeviceBudget(free) {
		t.Fatalf("%d layers fit too (%d bytes of %d), yet FitLayers said %d", n+1, next.VRAMBytes, DeviceBudget(free), n)
	}
}

// freeFor is the free memory whose DeviceBudget is at least need.
func freeFor(need uint64) uint64 {
	free := (need + 512<<20) * 20 / 19
	for DeviceBudget(free) < need {
		free++
	}
	return free
}

func TestDeviceBudgetLeavesAMargin(t *testing.T) {
	for _, free := range []uint64{0, 100 << 20, 512 << 20, 1 << 30, 8 << 30, 80 << 30} {
		b := DeviceBudget(free)
		if b >= free && free > 0 || (free > 1<<30 && b == 0) {
			t.Errorf("DeviceBudget(%d) = %d", free, b)
		}
	}
}

// A FIFO named .gguf would block an open forever (no writer ever comes): the estimator
// must refuse it from its mode, before opening.
func TestEstimateRefusesAFIFOFast(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pipe.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 3)
	go func() {
		_, err := EstimateMemory(fifo, EstimateOptions{})
		done <- err
	}()
	go func() {
		_, _, err := FitLayers(fifo, EstimateOptions{}, 8<<30)
		done <- err
	}()
	go func() {
		_, err := Inspect(fifo)
		done <- err
	}()
	for range 3 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotGGUF) {
				t.Fatalf("FIFO: %v, want ErrNotGGUF", err)
			}
			t.Log(err)
		case <-time.After(5 * time.Second):
			t.Fatal("the estimate of a FIFO hangs")
		}
	}
}

func TestEstimateRefusesDamagedFiles(t *testing.T) {
	real, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cases := map[string][]byte{
		"empty":             nil,
		"garbage":           []byte("this is not a model, only text that ends with .gguf\n"),
		"magic only":        []byte("GGUF"),
		"truncated header":  real[:200],
		"truncated tensors": real[:len(real)/8],
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".gguf")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := EstimateMemory(p, EstimateOptions{})
			if !errors.Is(err, ErrNotGGUF) {
				t.Fatalf("%s: %v, want ErrNotGGUF", name, err)
			}
			t.Log(err)
		})
	}
	if _, err := EstimateMemory(dir, EstimateOptions{}); !errors.Is(err, ErrNotGGUF) {
		t.Errorf("a folder: %v, want ErrNotGGUF", err)
	}
	if _, err := EstimateMemory(filepath.Join(dir, "missing.gguf"), EstimateOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v, want ErrNotExist", err)
	}
}

// Random damage to the header costs an error or a figure, never a panic or a hang: the
// library panics on some malformed values, and the estimator turns that into an error.
func TestEstimateSurvivesDamagedHeaders(t *testing.T) {
	real, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "damaged.gguf")
	r := rand.New(rand.NewPCG(1, 2))
	for range 120 {
		b := append([]byte(nil), real...)
		for range 1 + r.IntN(4) {
			b[r.IntN(12000)] = byte(r.IntN(256)) // the header is the first ~12 KB
		}
		if r.IntN(3) == 0 {
			b = b[:r.IntN(len(b))]
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := EstimateMemory(p, EstimateOptions{GPULayers: -1}); err != nil && !errors.Is(err, ErrNotGGUF) && !errors.Is(err, ErrNotLanguageModel) {
			t.Fatalf("error %v matches neither ErrNotGGUF nor ErrNotLanguageModel", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a damaged header took %v", d)
		}
	}
}

// The generated Tiny model (4 blocks, trained for 512 tokens): the estimate follows its shape.
func TestEstimateSyntheticTinyModel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := synthmodel.Write(p, synthmodel.Tiny, testenv.Model(t), 1); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	e, err := EstimateMemory(p, EstimateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Tiny (%d bytes): %+v", st.Size(), e)
	if e.Layers != synthmodel.Tiny.Layers+1 || e.CtxSize != synthmodel.Tiny.CtxTrain {
		t.Fatalf("layers %d, ctx %d; want %d and %d", e.Layers, e.CtxSize, synthmodel.Tiny.Layers+1, synthmodel.Tiny.CtxTrain)
	}
	if e.CPUOnlyRAM <= uint64(st.Size()) || e.FullOffloadVRAM <= uint64(st.Size())/2 {
		t.Fatalf("RAM %d and full-offload VRAM %d must hold the %d-byte weights", e.CPUOnlyRAM, e.FullOffloadVRAM, st.Size())
	}
}

func TestEstimateCacheFollowsTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.gguf")
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not yet"), 0o644); err != nil {
		t.Fatal(err)
	}
	var c EstimateCache
	if _, err := c.Estimate(p, EstimateOptions{}); !errors.Is(err, ErrNotGGUF) {
		t.Fatalf("garbage: %v", err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A new size (and time) is a new version of the file.
	e, err := c.Estimate(p, EstimateOptions{})
	if err != nil || e.Layers != 6 {
		t.Fatalf("after the download finished: %+v, %v", e, err)
	}
	if again, err := c.Estimate(p, EstimateOptions{}); err != nil || again != e {
		t.Fatalf("cached: %+v, %v; want %+v", again, err, e)
	}
}

// The estimate assumes the worker's default context; the two must not drift apart.
func TestDefaultCtxSizeIsTheWorkers(t *testing.T) {
	if DefaultCtxSize != engine.DefaultCtxSize {
		t.Fatalf("models.DefaultCtxSize %d, the worker's engine.DefaultCtxSize %d", DefaultCtxSize, engine.DefaultCtxSize)
	}
}
