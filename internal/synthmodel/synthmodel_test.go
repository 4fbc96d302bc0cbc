package synthmodel

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// tokenizerSource is the test model, whose tokenizer the synthetic models borrow.
func tokenizerSource(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(t), "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("test model missing (%v): it ships in ../shared/models beside the repo", err)
	}
	return testenv.Model(t) // checks the sha256
}

func TestTinyRunsInLlamaCpp(t *testing.T) {
	src := tokenizerSource(t)
	if _, err := llamaruntime.Load(""); err != nil {
		if errors.Is(err, llamaruntime.ErrMissing) {
			t.Skipf("%v", err)
		}
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := Write(path, Tiny, src, 42); err != nil {
		t.Fatal(err)
	}

	mp := llama.ModelDefaultParams()
	mp.SetCPUOnly()
	model, err := llama.ModelLoadFromFile(path, mp)
	if err != nil || model == 0 {
		t.Fatalf("llama.cpp refused the model: %v", err)
	}
	defer llama.ModelFree(model)
	vocab := llama.ModelGetVocab(model)
	nVocab := int(llama.VocabNTokens(vocab))
	if nVocab != 512 {
		t.Fatalf("vocab %d, want stories260K's 512", nVocab)
	}
	if got, want := llama.ModelNParams(model), uint64(Tiny.Params(nVocab)); got != want {
		t.Errorf("llama.cpp counts %d parameters, Params says %d", got, want)
	}
	for _, c := range []struct {
		what      string
		got, want int32
	}{
		{"layers", llama.ModelNLayer(model), int32(Tiny.Layers)},
		{"embd", llama.ModelNEmbd(model), int32(Tiny.Embd)},
		{"heads", llama.ModelNHead(model), int32(Tiny.Heads)},
		{"kv heads", llama.ModelNHeadKV(model), int32(Tiny.HeadsKV)},
		{"ctx_train", llama.ModelNCtxTrain(model), int32(Tiny.CtxTrain)},
	} {
		if c.got != c.want {
			t.Errorf("%s: llama.cpp says %d, the shape %d", c.what, c.got, c.want)
		}
	}

	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NUbatch = 128, 128, 128
	cp.NThreads, cp.NThreadsBatch = 1, 1
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil || lctx == 0 {
		t.Fatalf("context: %v", err)
	}
	defer llama.Free(lctx)

	tokens := llama.Tokenize(vocab, "Once upon a time", true, false)
	if len(tokens) < 2 {
		t.Fatalf("tokenized the prompt to %v", tokens)
	}
	var generated []llama.Token
	for len(generated) < 16 {
		if rc, err := llama.Decode(lctx, llama.BatchGetOne(tokens)); err != nil || rc != 0 {
			t.Fatalf("decode after %d tokens: rc %d, %v", len(generated), rc, err)
		}
		logits, err := llama.GetLogitsIth(lctx, -1, nVocab)
		if err != nil || len(logits) != nVocab {
			t.Fatalf("logits: %d of them, %v", len(logits), err)
		}
		best := 0
		for i, l := range logits {
			if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
				t.Fatalf("logit %d of token %d is %v", i, len(generated), l)
			}
			if l > logits[best] {
				best = i
			}
		}
		generated = append(generated, llama.Token(best))
		tokens = []llama.Token{llama.Token(best)}
	}
	t.Logf("greedy: %q %v", llama.Detokenize(vocab, generated, false, false), generated)
}

func TestWriteCopiesTokenizerAndIsDeterministic(t *testing.T) {
	src := tokenizerSource(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), filepath.Join(dir, "c.gguf")
	for _, w := range []struct {
		path string
		seed uint64
	}{{a, 7}, {b, 7}, {c, 8}} {
		if err := Write(w.path, Tiny, src, w.seed); err != nil {
			t.Fatal(err)
		}
	}

	want, err := readTokenizer(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readTokenizer(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.raw, want.raw) || got.count != want.count || got.vocab != want.vocab {
		t.Errorf("tokenizer not copied verbatim: %d keys, %d bytes, want %d keys, %d bytes", got.count, len(got.raw), want.count, len(want.raw))
	}

	fa, fb, fc := readFile(t, a), readFile(t, b), readFile(t, c)
	if size := newLayout(Tiny, want).size; int64(len(fa)) != size {
		t.Errorf("file is %d bytes, the layout says %d", len(fa), size)
	}
	if !bytes.Equal(fa, fb) {
		t.Error("the same seed wrote different files")
	}
	if bytes.Equal(fa, fc) {
		t.Error("different seeds wrote the same file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("temp files left behind: %d entries", len(entries))
	}
}

func TestCachedWritesOnlyWhenMissing(t *testing.T) {
	src := tokenizerSource(t)
	dir := filepath.Join(t.TempDir(), "synth")
	p1, err := Cached(dir, Tiny, src)
	if err != nil {
		t.Fatal(err)
	}
	fi1, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Cached(dir, Tiny, src)
	if err != nil || p2 != p1 {
		t.Fatalf("second call: %q %v, want %q", p2, err, p1)
	}
	if fi2, _ := os.Stat(p2); !os.SameFile(fi1, fi2) {
		t.Error("a present file was written again")
	}

	// An incomplete file (say, from a crash) is replaced.
	if err := os.Truncate(p1, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := Cached(dir, Tiny, src); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p1); fi.Size() != fi1.Size() {
		t.Errorf("truncated file not rewritten: %d bytes, want %d", fi.Size(), fi1.Size())
	}

	other := Tiny
	other.Layers++
	p3, err := Cached(dir, other, src)
	if err != nil || p3 == p1 {
		t.Fatalf("another shape: %q %v", p3, err)
	}
}

func TestPresetParams(t *testing.T) {
	// The preset comments quote these.
	for _, c := range []struct {
		name string
		s    Shape
		want int64
	}{
		{"tiny", Tiny, 3_410_176},
		{"m272", M272, 273_720_320},
		{"m1b", M1B, 971_073_536},
	} {
		if err := c.s.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if got := c.s.Params(512); got != c.want {
			t.Errorf("%s: %d parameters, want %d", c.name, got, c.want)
		}
		if Presets[c.name] != c.s {
			t.Errorf("Presets[%q] is not the preset", c.name)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Shape)
	}{
		{"no layers", func(s *Shape) { s.Layers = 0 }},
		{"embd not a multiple of 32", func(s *Shape) { s.Embd = 250 }},
		{"ff not a multiple of 32", func(s *Shape) { s.FF = 700 }},
		{"heads do not divide embd", func(s *Shape) { s.Heads = 3 }},
		{"kv heads do not divide heads", func(s *Shape) { s.HeadsKV = 3 }},
		{"no context", func(s *Shape) { s.CtxTrain = 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := Tiny
			c.edit(&s)
			if err := s.Validate(); !errors.Is(err, ErrShape) {
				t.Errorf("Validate(%v) = %v, want ErrShape", s, err)
			}
			if err := Write(filepath.Join(t.TempDir(), "x.gguf"), s, "unused", 1); !errors.Is(err, ErrShape) {
				t.Errorf("Write: %v, want ErrShape", err)
			}
		})
	}
}

func TestNotATokenizer(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.gguf")
	if err := os.WriteFile(p, []byte("not a gguf file at all, just text"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(t.TempDir(), "out.gguf"), Tiny, p, 1); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("Write with a text file as tokenizer: %v, want ErrNoTokenizer", err)
	}
}

func TestFloat16(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{0.5, 0x3800},
		{65504, 0x7bff},
		{1e6, 0x7c00},                         // beyond the range: infinity
		{float32(math.Ldexp(1, -14)), 0x0400}, // smallest normal
		{float32(math.Ldexp(1, -24)), 0x0001}, // smallest subnormal
		{float32(math.Ldexp(3, -16)), 0x0300}, // a subnormal
		{1e-10, 0},                            // underflow
		{float32(1.0 / 127), 0x2008},          // the embedding scale
	} {
		if got := float16(c.in); got != c.want {
			t.Errorf("float16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
