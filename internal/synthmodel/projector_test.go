package synthmodel

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/hybridgroup/yzma/pkg/mtmd"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// loadVision loads the llama.cpp runtime and its vision library, skipping the test when
// the library is not built, unless under CI, where `scripts/setup.sh` builds it.
func loadVision(t *testing.T) {
	t.Helper()
	dir, err := llamaruntime.Load("")
	if err != nil {
		t.Skipf("%v", err)
	}
	if err := llamaruntime.LoadVision(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must have the vision library: %v", err)
		}
		t.Skipf("%v", err)
	}
}

func testImage(t *testing.T, seed uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for y := range 30 {
		for x := range 40 {
			img.Set(x, y, color.RGBA{uint8(x*6) ^ seed, uint8(y*8) + seed, seed * 3, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestTinyProjectorRunsInMtmd: llama.cpp's mtmd loads the synthetic projector beside the
// test model, turns an image into ImageTokens tokens, and different images give the
// text model different logits.
func TestTinyProjectorRunsInMtmd(t *testing.T) {
	src := tokenizerSource(t)
	loadVision(t)
	path := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := WriteProjector(path, TinyProjector, 7); err != nil {
		t.Fatal(err)
	}

	mp := llama.ModelDefaultParams()
	mp.SetCPUOnly()
	model, err := llama.ModelLoadFromFile(src, mp)
	if err != nil || model == 0 {
		t.Fatalf("load the test model: %v", err)
	}
	defer llama.ModelFree(model)
	if n := llama.ModelNEmbd(model); int(n) != TinyProjector.TextEmbd {
		t.Fatalf("the test model is %d wide, the projector's output %d", n, TinyProjector.TextEmbd)
	}

	params := mtmd.ContextParamsDefault()
	params.UseGPU, params.Threads, params.Warmup = false, 1, false
	mctx, err := mtmd.InitFromFile(path, model, params)
	if err != nil {
		t.Fatalf("mtmd refused the projector: %v", err)
	}
	defer mtmd.Free(mctx)
	if !mtmd.SupportVision(mctx) {
		t.Fatal("no vision support")
	}

	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NUbatch = 128, 128, 128
	cp.NThreads, cp.NThreadsBatch = 1, 1
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil || lctx == 0 {
		t.Fatalf("context: %v", err)
	}
	defer llama.Free(lctx)
	mem, _ := llama.GetMemory(lctx)

	logits := func(img []byte) []float32 {
		bm := mtmd.BitmapInitFromBuf(mctx, &img[0], uint64(len(img)), false, mtmd.InitOptDefault())
		if bm.Bitmap == 0 {
			t.Fatal("mtmd could not decode the PNG")
		}
		defer mtmd.BitmapFree(bm.Bitmap)
		chunks := mtmd.InputChunksInit()
		defer mtmd.InputChunksFree(chunks)
		text := mtmd.NewInputText("Look: "+mtmd.DefaultMarker()+" Once upon a time", true, false)
		if rc := mtmd.Tokenize(mctx, chunks, text, []mtmd.Bitmap{bm.Bitmap}); rc != 0 {
			t.Fatalf("tokenize: %d", rc)
		}
		images := 0
		for i := range mtmd.InputChunksSize(chunks) {
			c := mtmd.InputChunksGet(chunks, i)
			if mtmd.InputChunkGetType(c) == mtmd.InputChunkTypeImage {
				images++
				if n := mtmd.InputChunkGetNTokens(c); int(n) != TinyProjector.ImageTokens() {
					t.Fatalf("an image is %d tokens, want %d", n, TinyProjector.ImageTokens())
				}
			}
		}
		if images != 1 {
			t.Fatalf("%d image chunks, want 1", images)
		}
		_, _ = llama.MemorySeqRm(mem, 0, -1, -1)
		var past llama.Pos
		if rc := mtmd.HelperEvalChunks(mctx, lctx, chunks, 0, 0, 128, true, &past); rc != 0 {
			t.Fatalf("eval: %d", rc)
		}
		out, err := llama.GetLogitsIth(lctx, -1, int(llama.VocabNTokens(llama.ModelGetVocab(model))))
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out...)
	}
	a, b := logits(testImage(t, 0)), logits(testImage(t, 99))
	again := logits(testImage(t, 0))
	var diff, same float64
	for i := range a {
		if math.IsNaN(float64(a[i])) || math.IsInf(float64(a[i]), 0) {
			t.Fatalf("logit %d is %v", i, a[i])
		}
		diff = max(diff, math.Abs(float64(a[i]-b[i])))
		same = max(same, math.Abs(float64(a[i]-again[i])))
	}
	if diff < 1e-3 || same > 1e-4 {
		t.Fatalf("largest logit change: %g between two images, %g for the same image again", diff, same)
	}
	t.Logf("largest logit change between two images: %.3f", diff)
}

func TestWriteProjectorIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), filepath.Join(dir, "c.gguf")
	for _, w := range []struct {
		path string
		seed uint64
	}{{a, 1}, {b, 1}, {c, 2}} {
		if err := WriteProjector(w.path, TinyProjector, w.seed); err != nil {
			t.Fatal(err)
		}
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	cb, _ := os.ReadFile(c)
	if !bytes.Equal(ab, bb) || bytes.Equal(ab, cb) || len(ab) != len(cb) || !bytes.HasPrefix(ab, []byte("GGUF")) {
		t.Fatalf("same seed equal: %v, other seed equal: %v, sizes %d %d", bytes.Equal(ab, bb), bytes.Equal(ab, cb), len(ab), len(cb))
	}
}

func TestProjectorValidate(t *testing.T) {
	if err := TinyProjector.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*Projector){
		"patch does not divide": func(p *Projector) { p.PatchSize = 15 },
		"heads do not divide":   func(p *Projector) { p.Heads = 5 },
		"ff equals embd":        func(p *Projector) { p.FF = p.Embd },
		"one block":             func(p *Projector) { p.Layers = 1 },
		"no output":             func(p *Projector) { p.TextEmbd = 0 },
	} {
		p := TinyProjector
		change(&p)
		if err := p.Validate(); !errors.Is(err, ErrShape) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
