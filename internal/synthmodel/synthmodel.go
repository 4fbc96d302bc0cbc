// Package synthmodel writes random-weight llama GGUF models of real shapes, to benchmark engines without downloading a model.
package synthmodel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Shape is a llama model's hyperparameters. The vocabulary comes from the tokenizer.
type Shape struct {
	Layers   int // transformer blocks
	Embd     int // hidden size; a multiple of 32 (Q8_0 blocks) and of Heads
	FF       int // feed-forward size; a multiple of 32
	Heads    int // attention heads
	HeadsKV  int // key/value heads; divides Heads (fewer = grouped-query attention)
	CtxTrain int // training context, which llama.cpp takes as the default context
}

// Presets. Parameter counts are for the 512-token stories260K tokenizer; a vocabulary
// costs 2*vocab*Embd (embedding and output), so the blocks hold nearly all of them.
var (
	// Tiny is for tests: 3,410,176 parameters, a 3.6 MB file.
	Tiny = Shape{Layers: 4, Embd: 256, FF: 768, Heads: 4, HeadsKV: 2, CtxTrain: 512}
	// M272 has 272.7M parameters in its blocks (273.7M in all, a 291 MB file): a
	// ~300M-class llama, 16 heads of 64 sharing 4 KV heads (grouped-query attention).
	M272 = Shape{Layers: 20, Embd: 1024, FF: 3584, Heads: 16, HeadsKV: 4, CtxTrain: 4096}
	// M1B is TinyLlama-1.1B's blocks: 969.0M parameters in them (971.1M in all, a
	// 1.03 GB file); TinyLlama's 32000-token vocabulary makes up the rest of its 1.1B.
	M1B = Shape{Layers: 22, Embd: 2048, FF: 5632, Heads: 32, HeadsKV: 4, CtxTrain: 2048}
)

// Presets names the presets, as the command's -preset flag takes them.
var Presets = map[string]Shape{"tiny": Tiny, "m272": M272, "m1b": M1B}

// generatorVersion is part of cached file names: bump it when the files change, so old
// caches are not taken for new ones.
const generatorVersion = 1

// cacheSeed is the seed of cached files.
const cacheSeed = 1

// Llama hyperparameters the shapes do not vary.
const (
	normEps  = 1e-5
	ropeBase = 10000
)

// ErrShape is matched (errors.Is) by the error of a shape llama.cpp could not load.
var ErrShape = errors.New("invalid model shape")

// Validate reports whether llama.cpp can load a model of this shape.
func (s Shape) Validate() error {
	switch {
	case s.Layers < 1 || s.Embd < 1 || s.FF < 1 || s.Heads < 1 || s.HeadsKV < 1 || s.CtxTrain < 1:
		return fmt.Errorf("%w %v: every size must be positive", ErrShape, s)
	case s.Embd%32 != 0 || s.FF%32 != 0:
		return fmt.Errorf("%w %v: embd and ff must be multiples of 32 (the Q8_0 block)", ErrShape, s)
	case s.Embd%s.Heads != 0:
		return fmt.Errorf("%w %v: heads must divide embd", ErrShape, s)
	case s.Heads%s.HeadsKV != 0:
		return fmt.Errorf("%w %v: kv heads must divide heads", ErrShape, s)
	}
	return nil
}

// String names the shape, e.g. "20L-1024e-3584ff-16h-4kv-4096ctx".
func (s Shape) String() string {
	return fmt.Sprintf("%dL-%de-%dff-%dh-%dkv-%dctx", s.Layers, s.Embd, s.FF, s.Heads, s.HeadsKV, s.CtxTrain)
}

// Params is the parameter count with a vocabulary of vocab tokens, as llama.cpp's
// llama_model_n_params counts it.
func (s Shape) Params(vocab int) int64 {
	var n int64
	for _, t := range s.tensors(vocab) {
		n += t.elems()
	}
	return n
}

// VocabSize is the number of tokens of the tokenizer in the GGUF file at path.
func VocabSize(tokenizerFrom string) (int, error) {
	tok, err := readTokenizer(tokenizerFrom)
	if err != nil {
		return 0, err
	}
	return tok.vocab, nil
}

// tensor is one weight of the model; dims are in GGUF order (ne0, the input, first).
type tensor struct {
	name   string
	typ    uint32
	dims   []int
	scale  float32 // Q8_0 block scale; F32 tensors are all ones
	offset int64   // from the start of the data section
}

func (t tensor) elems() int64 {
	n := int64(1)
	for _, d := range t.dims {
		n *= int64(d)
	}
	return n
}

func (t tensor) bytes() int64 {
	if t.typ == typeQ8_0 {
		return t.elems() / 32 * 34
	}
	return t.elems() * 4
}

// matrix is a Q8_0 weight of in x out. Uniform int8 weights in [-127, 127] have a
// standard deviation of about 127/sqrt(3); the scale makes that 1/sqrt(in), so each
// matrix keeps its input's magnitude and activations neither vanish nor blow up.
func matrix(name string, in, out int) tensor {
	scale := float32(math.Sqrt(3) / (127 * math.Sqrt(float64(in))))
	return tensor{name: name, typ: typeQ8_0, dims: []int{in, out}, scale: scale}
}

func norm(name string, n int) tensor {
	return tensor{name: name, typ: typeF32, dims: []int{n}}
}

// tensors lists the weights in the order llama.cpp's converter writes them.
func (s Shape) tensors(vocab int) []tensor {
	kv := s.Embd / s.Heads * s.HeadsKV
	embd := matrix("token_embd.weight", s.Embd, vocab)
	embd.scale = 1.0 / 127 // a lookup, not a product: entries in [-1, 1]
	ts := []tensor{embd}
	for i := 0; i < s.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			norm(p+"attn_norm.weight", s.Embd),
			matrix(p+"attn_q.weight", s.Embd, s.Embd),
			matrix(p+"attn_k.weight", s.Embd, kv),
			matrix(p+"attn_v.weight", s.Embd, kv),
			matrix(p+"attn_output.weight", s.Embd, s.Embd),
			norm(p+"ffn_norm.weight", s.Embd),
			matrix(p+"ffn_gate.weight", s.Embd, s.FF),
			matrix(p+"ffn_up.weight", s.Embd, s.FF),
			matrix(p+"ffn_down.weight", s.FF, s.Embd),
		)
	}
	return append(ts, norm("output_norm.weight", s.Embd), matrix("output.weight", s.Embd, vocab))
}

// layout is a model file's metadata and tensor infos, and the file's size.
type layout struct {
	header  []byte
	tensors []tensor
	size    int64
}

func newLayout(s Shape, tok *tokenizer) layout {
	ts := s.tensors(tok.vocab)
	var data int64
	for i := range ts {
		ts[i].offset = data
		data += ts[i].bytes()
		data += padding(data)
	}

	var kv encoder
	kv.kvString("general.architecture", "llama")
	kv.kvString("general.name", "beekeeper-synth-"+s.String())
	kv.kvUint32("general.file_type", 7) // LLAMA_FTYPE_MOSTLY_Q8_0
	kv.kvUint32("general.quantization_version", 2)
	kv.kvUint32("general.alignment", alignment)
	kv.kvUint32("llama.context_length", uint32(s.CtxTrain))
	kv.kvUint32("llama.embedding_length", uint32(s.Embd))
	kv.kvUint32("llama.block_count", uint32(s.Layers))
	kv.kvUint32("llama.feed_forward_length", uint32(s.FF))
	kv.kvUint32("llama.rope.dimension_count", uint32(s.Embd/s.Heads))
	kv.kvUint32("llama.attention.head_count", uint32(s.Heads))
	kv.kvUint32("llama.attention.head_count_kv", uint32(s.HeadsKV))
	kv.kvFloat32("llama.attention.layer_norm_rms_epsilon", normEps)
	kv.kvFloat32("llama.rope.freq_base", ropeBase)
	kv.kvUint32("llama.vocab_size", uint32(tok.vocab))

	var h encoder
	h.WriteString(ggufMagic)
	h.u32(ggufVersion)
	h.u64(uint64(len(ts)))
	h.u64(uint64(kv.kvs + tok.count))
	h.Write(kv.Bytes())
	h.Write(tok.raw)
	for _, t := range ts {
		h.tensorInfo(t.name, t.typ, uint64(t.offset), t.dims...)
	}
	h.pad()
	return layout{header: h.Bytes(), tensors: ts, size: int64(h.Len()) + data}
}

// Write writes a random-weight llama model of shape s to path as GGUF v3, all matrices
// Q8_0, with the tokenizer copied from the GGUF file at tokenizerFrom. The same
// arguments give the same bytes. The file appears at path only once complete.
func Write(path string, s Shape, tokenizerFrom string, seed uint64) error {
	if err := s.Validate(); err != nil {
		return err
	}
	tok, err := readTokenizer(tokenizerFrom)
	if err != nil {
		return err
	}
	return write(path, newLayout(s, tok), seed)
}

func write(path string, l layout, seed uint64) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("synthetic model: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(l.header); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	var biggest int64
	for _, t := range l.tensors {
		biggest = max(biggest, t.bytes()+alignment)
	}
	buf := make([]byte, biggest)
	for i, t := range l.tensors {
		n := t.bytes()
		b := buf[:n+padding(n)]
		fill(b[:n], t, seed, uint64(i))
		clear(b[n:])
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	// CreateTemp made it private; a model is not.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	// Sync before the rename, so a crash cannot leave an empty file under the final name.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("synthetic model: %w", err)
	}
	return nil
}

// fill writes tensor t's data into b. Each tensor has its own random stream, so its
// bytes do not depend on the tensors before it.
func fill(b []byte, t tensor, seed, index uint64) {
	if t.typ == typeF32 {
		one := math.Float32bits(1)
		for i := 0; i < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], one)
		}
		return
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], index)
	_, _ = rand.NewChaCha8(key).Read(b) // never fails
	// A Q8_0 block is a float16 scale and 32 int8 quants. -128 is out of the range
	// ggml's quantizer produces (and its SIMD dot products assume), so it becomes -127.
	d := float16(t.scale)
	for blk := 0; blk < len(b); blk += 34 {
		binary.LittleEndian.PutUint16(b[blk:], d)
		qs := b[blk+2 : blk+34]
		for i, q := range qs {
			if q == 0x80 {
				qs[i] = 0x81
			}
		}
	}
}

// Cached returns the path of a model of shape s with the tokenizer of tokenizerFrom in
// dir, writing it only when it is missing or incomplete. The file name holds the shape
// and a hash of the tokenizer.
func Cached(dir string, s Shape, tokenizerFrom string) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	tok, err := readTokenizer(tokenizerFrom)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(tok.raw)
	name := fmt.Sprintf("llama-%s-q8_0-tok%s-g%d.gguf", s, hex.EncodeToString(sum[:6]), generatorVersion)
	path := filepath.Join(dir, name)
	l := newLayout(s, tok)
	if fi, err := os.Stat(path); err == nil && fi.Size() == l.size {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("synthetic model cache: %w", err)
	}
	if err := write(path, l, cacheSeed); err != nil {
		return "", err
	}
	return path, nil
}
