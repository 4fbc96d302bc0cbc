package synthmodel

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Projector is the shape of a llava-style multimodal projector (mmproj, projector type
// "mlp"): a small CLIP vision tower over square patches and a two-layer MLP that maps
// each patch to one embedding of the text model. llama.cpp's mtmd loads it beside a
// text model whose embedding width is TextEmbd.
type Projector struct {
	ImageSize int // pixels a side; every image is resized (padded) to it
	PatchSize int // pixels a side of a patch: one image token per patch
	Embd      int // the vision tower's width
	FF        int // its feed-forward size; not Embd (llama.cpp would take it for a legacy file and swap the FFN)
	Heads     int // its attention heads; divides Embd
	Layers    int // its blocks; llava reads the second to last, so at least 2
	TextEmbd  int // the text model's embedding width: the projection's output
}

// TinyProjector fits the test model (stories260K, 64 wide): 64×64 images in 16 patches,
// so an image is 16 prompt tokens: 125,504 parameters, a 505 KB file.
var TinyProjector = Projector{ImageSize: 64, PatchSize: 16, Embd: 64, FF: 128, Heads: 4, Layers: 2, TextEmbd: 64}

// Validate reports whether llama.cpp's mtmd can load a projector of this shape.
func (p Projector) Validate() error {
	switch {
	case p.ImageSize < 1 || p.PatchSize < 1 || p.Embd < 1 || p.FF < 1 || p.Heads < 1 || p.TextEmbd < 1:
		return fmt.Errorf("%w %+v: every size must be positive", ErrShape, p)
	case p.ImageSize%p.PatchSize != 0:
		return fmt.Errorf("%w %+v: the patch size must divide the image size", ErrShape, p)
	case p.Embd%p.Heads != 0:
		return fmt.Errorf("%w %+v: heads must divide embd", ErrShape, p)
	case p.FF == p.Embd:
		return fmt.Errorf("%w %+v: ff must differ from embd", ErrShape, p)
	case p.Layers < 2:
		return fmt.Errorf("%w %+v: llava reads the second to last block, so at least 2", ErrShape, p)
	}
	return nil
}

// ImageTokens is the number of prompt tokens one image becomes: one per patch.
func (p Projector) ImageTokens() int {
	n := p.ImageSize / p.PatchSize
	return n * n
}

// Weight kinds of a projector tensor: how fill draws its values.
const (
	weightMatrix = iota // random, scaled by 1/sqrt(inputs)
	weightOnes          // a norm's scale
	weightZeros         // a bias
	weightEmbd          // position embeddings: random in [-1, 1]
)

// projTensor is one F32 tensor of a projector; dims in GGUF order (ne0 first).
type projTensor struct {
	name string
	kind int
	dims []int
	in   int // a matrix's inputs (its scale)
}

func (t projTensor) bytes() int64 {
	n := int64(4)
	for _, d := range t.dims {
		n *= int64(d)
	}
	return n
}

// tensors lists the weights under the names llama.cpp's clip loader looks for.
func (p Projector) tensors() []projTensor {
	mat := func(name string, in, out int) projTensor {
		return projTensor{name: name, kind: weightMatrix, dims: []int{in, out}, in: in}
	}
	vec := func(name string, kind, n int) projTensor { return projTensor{name: name, kind: kind, dims: []int{n}} }
	e := p.Embd
	ts := []projTensor{
		// A convolution kernel: KW, KH, input channels (RGB), output channels.
		{name: "v.patch_embd.weight", kind: weightMatrix, dims: []int{p.PatchSize, p.PatchSize, 3, e}, in: 3 * p.PatchSize * p.PatchSize},
		vec("v.patch_embd.bias", weightZeros, e),
		{name: "v.position_embd.weight", kind: weightEmbd, dims: []int{e, p.ImageTokens()}},
	}
	for i := 0; i < p.Layers; i++ {
		b := fmt.Sprintf("v.blk.%d.", i)
		ts = append(ts,
			vec(b+"ln1.weight", weightOnes, e), vec(b+"ln1.bias", weightZeros, e),
			mat(b+"attn_q.weight", e, e), vec(b+"attn_q.bias", weightZeros, e),
			mat(b+"attn_k.weight", e, e), vec(b+"attn_k.bias", weightZeros, e),
			mat(b+"attn_v.weight", e, e), vec(b+"attn_v.bias", weightZeros, e),
			mat(b+"attn_out.weight", e, e), vec(b+"attn_out.bias", weightZeros, e),
			vec(b+"ln2.weight", weightOnes, e), vec(b+"ln2.bias", weightZeros, e),
			mat(b+"ffn_up.weight", e, p.FF), vec(b+"ffn_up.bias", weightZeros, p.FF),
			mat(b+"ffn_down.weight", p.FF, e), vec(b+"ffn_down.bias", weightZeros, e),
		)
	}
	// llava's projector: mm.0, GELU, mm.2 (mm.1 is the activation in the original model).
	return append(ts,
		mat("mm.0.weight", e, p.TextEmbd), vec("mm.0.bias", weightZeros, p.TextEmbd),
		mat("mm.2.weight", p.TextEmbd, p.TextEmbd), vec("mm.2.bias", weightZeros, p.TextEmbd),
	)
}

// WriteProjector writes a random-weight projector of shape p to path as GGUF v3, every
// tensor F32, with the metadata keys llama.cpp's clip loader requires. The same
// arguments give the same bytes; the file appears at path only once complete.
func WriteProjector(path string, p Projector, seed uint64) error {
	if err := p.Validate(); err != nil {
		return err
	}
	ts := p.tensors()
	var kv encoder
	kv.kvString("general.architecture", "clip")
	kv.kvString("general.name", fmt.Sprintf("beekeeper-synth-mmproj-%dpx-%de", p.ImageSize, p.TextEmbd))
	kv.kvUint32("general.alignment", alignment)
	kv.kvBool("clip.has_vision_encoder", true)
	kv.kvString("clip.projector_type", "mlp")
	kv.kvBool("clip.use_gelu", true)
	kv.kvUint32("clip.vision.image_size", uint32(p.ImageSize))
	kv.kvUint32("clip.vision.patch_size", uint32(p.PatchSize))
	kv.kvUint32("clip.vision.embedding_length", uint32(p.Embd))
	kv.kvUint32("clip.vision.feed_forward_length", uint32(p.FF))
	kv.kvUint32("clip.vision.block_count", uint32(p.Layers))
	kv.kvUint32("clip.vision.attention.head_count", uint32(p.Heads))
	kv.kvUint32("clip.vision.projection_dim", uint32(p.TextEmbd))
	kv.kvFloat32("clip.vision.attention.layer_norm_epsilon", normEps)
	// CLIP's normalization: the mean and spread of its training images, per channel.
	kv.kvFloat32s("clip.vision.image_mean", 0.48145466, 0.4578275, 0.40821073)
	kv.kvFloat32s("clip.vision.image_std", 0.26862954, 0.26130258, 0.27577711)

	var h encoder
	h.WriteString(ggufMagic)
	h.u32(ggufVersion)
	h.u64(uint64(len(ts)))
	h.u64(uint64(kv.kvs))
	h.Write(kv.Bytes())
	var off int64
	for _, t := range ts {
		h.tensorInfo(t.name, typeF32, uint64(off), t.dims...)
		off += t.bytes()
		off += padding(off)
	}
	h.pad()

	data := make([]byte, 0, off)
	for i, t := range ts {
		data = t.fill(data, seed, uint64(i))
		data = append(data, make([]byte, padding(int64(len(data))))...)
	}
	return writeFile(path, h.Bytes(), data)
}

// fill appends t's values to b. Each tensor has its own random stream.
func (t projTensor) fill(b []byte, seed, index uint64) []byte {
	n := int(t.bytes() / 4)
	rng := rand.New(rand.NewPCG(seed, index))
	// Uniform in [-a, a] has a standard deviation of a/sqrt(3): a matrix keeps its input's
	// magnitude when that is 1/sqrt(inputs).
	a := float32(1)
	if t.kind == weightMatrix {
		a = float32(math.Sqrt(3 / float64(t.in)))
	}
	for range n {
		var v float32
		switch t.kind {
		case weightOnes:
			v = 1
		case weightMatrix, weightEmbd:
			v = a * (2*rng.Float32() - 1)
		}
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func (e *encoder) kvBool(key string, v bool) {
	e.str(key)
	e.u32(ggufBool)
	if v {
		e.WriteByte(1)
	} else {
		e.WriteByte(0)
	}
	e.kvs++
}

func (e *encoder) kvFloat32s(key string, vs ...float32) {
	e.str(key)
	e.u32(ggufArray)
	e.u32(ggufFloat32)
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		e.u32(math.Float32bits(v))
	}
	e.kvs++
}

// writeFile writes header and data to path through a temporary file in the same folder,
// so the file appears only once complete.
func writeFile(path string, header, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("synthetic projector: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	for _, b := range [][]byte{header, data} {
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("synthetic projector: %w", err)
	}
	return nil
}
