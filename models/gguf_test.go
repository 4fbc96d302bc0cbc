package models

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// ggufEnc writes GGUF by hand, little-endian, for tests.
type ggufEnc struct{ bytes.Buffer }

func (e *ggufEnc) u32(v uint32) { binary.Write(e, binary.LittleEndian, v) }
func (e *ggufEnc) u64(v uint64) { binary.Write(e, binary.LittleEndian, v) }
func (e *ggufEnc) str(s string) { e.u64(uint64(len(s))); e.WriteString(s) }

// kv writes a key, its value type and value (a Go value of the matching width, a string,
// or a slice for an array).
func (e *ggufEnc) kv(key string, v any) {
	e.str(key)
	e.value(v, true)
}

func (e *ggufEnc) value(v any, withType bool) {
	typ := func(t valueType) {
		if withType {
			e.u32(uint32(t))
		}
	}
	switch v := v.(type) {
	case string:
		typ(typeString)
		e.str(v)
	case []string:
		typ(typeArray)
		e.u32(uint32(typeString))
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []int32:
		typ(typeArray)
		e.u32(uint32(typeInt32))
		e.u64(uint64(len(v)))
		binary.Write(e, binary.LittleEndian, v)
	case []float32:
		typ(typeArray)
		e.u32(uint32(typeFloat32))
		e.u64(uint64(len(v)))
		binary.Write(e, binary.LittleEndian, v)
	default:
		types := map[string]valueType{"uint8": typeUint8, "int8": typeInt8, "uint16": typeUint16,
			"int16": typeInt16, "uint32": typeUint32, "int32": typeInt32, "float32": typeFloat32,
			"bool": typeBool, "uint64": typeUint64, "int64": typeInt64, "float64": typeFloat64}
		t, ok := types[fmt.Sprintf("%T", v)]
		if !ok {
			panic(fmt.Sprintf("ggufEnc: no GGUF type for %T", v))
		}
		typ(t)
		binary.Write(e, binary.LittleEndian, v)
	}
}

type synthTensor struct {
	name string
	dims []uint64
	typ  uint32
}

type synthKV struct {
	key   string
	value any
}

// synthGGUF is a whole GGUF file: header, padding and zeroed tensor data. headerEnd is
// where the tensor infos end; dataOffset where the data starts.
func synthGGUF(t testing.TB, kvs []synthKV, tensors []synthTensor) (file []byte, headerEnd, dataOffset int) {
	t.Helper()
	var e ggufEnc
	e.WriteString("GGUF")
	e.u32(3)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.kv(kv.key, kv.value)
	}
	var off uint64
	for _, ti := range tensors {
		e.str(ti.name)
		e.u32(uint32(len(ti.dims)))
		n := uint64(1)
		for _, d := range ti.dims {
			e.u64(d)
			n *= d
		}
		e.u32(ti.typ)
		e.u64(off)
		gt, ok := ggmlTypeOf(ti.typ)
		size := n * 4 // an unknown type: any size will do
		if ok {
			size = n / gt.block * gt.size
		}
		off += (size + 31) / 32 * 32
	}
	headerEnd = e.Len()
	dataOffset = (headerEnd + 31) / 32 * 32
	e.Write(make([]byte, dataOffset-headerEnd+int(off)))
	return e.Bytes(), headerEnd, dataOffset
}

func tokens(n int, prefix string) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return s
}

const synthTemplate = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"

// synthKVs is a small llama with GQA (8 heads, 2 KV heads), a chat template and every
// value type, ordered so that the architecture's keys come before general.architecture.
func synthKVs() []synthKV {
	return []synthKV{
		{"llama.context_length", uint32(4096)},
		{"llama.embedding_length", uint32(256)},
		{"general.architecture", "llama"},
		{"general.name", "synth"},
		{"general.file_type", uint32(15)},
		{"general.alignment", uint32(32)},
		{"llama.block_count", uint64(2)},
		{"llama.feed_forward_length", int32(688)},
		{"llama.attention.head_count", uint32(8)},
		{"llama.attention.head_count_kv", uint16(2)},
		{"llama.rope.freq_base", float32(10000)},
		{"llama.attention.layer_norm_rms_epsilon", float64(1e-5)},
		{"synth.u8", uint8(1)}, {"synth.i8", int8(-1)}, {"synth.i16", int16(-2)},
		{"synth.i64", int64(-3)}, {"synth.bool", true},
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.tokens", tokens(300, "tok")},
		{"tokenizer.ggml.scores", make([]float32, 300)},
		{"tokenizer.ggml.token_type", make([]int32, 300)},
		{"tokenizer.ggml.merges", tokens(100, "m ")},
		{"tokenizer.chat_template", synthTemplate},
	}
}

func synthTensors() []synthTensor {
	return []synthTensor{
		{"token_embd.weight", []uint64{256, 300}, 12}, // Q4_K: 300 blocks of 144 bytes
		{"blk.0.attn_q.weight", []uint64{256, 256}, 12},
		{"blk.0.attn_k.weight", []uint64{256, 64}, 12},
		{"blk.0.attn_norm.weight", []uint64{256}, 0},      // F32
		{"blk.1.ffn_down.weight", []uint64{256, 256}, 14}, // Q6_K: 256 blocks of 210 bytes
		{"output.weight", []uint64{256, 300}, 8},          // Q8_0: 2400 blocks of 34 bytes
	}
}

const (
	synthParams  = 256*300 + 256*256 + 256*64 + 256 + 256*256 + 256*300
	synthWeights = 300*144 + 256*144 + 64*144 + 256*4 + 256*210 + 2400*34
)

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "synth.gguf")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectRealModel(t *testing.T) {
	path := testenv.Model(t)
	info, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Path: path, Name: "stories260K", FileSize: info.FileSize, Architecture: "llama",
		Parameters: 292_800, ParametersText: "292.80 K", Quantization: "F32",
		ContextLength: 2048, Layers: 5}
	if info != want {
		t.Fatalf("Inspect = %+v\nwant      %+v", info, want)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := readGGUF(f, info.FileSize)
	if err != nil {
		t.Fatal(err)
	}
	// The header and the F32 weights are the whole file.
	if h.UnknownType || uint64(h.DataOffset)+h.WeightBytes != uint64(info.FileSize) {
		t.Errorf("header %d + weights %d bytes do not account for the %d-byte file", h.DataOffset, h.WeightBytes, info.FileSize)
	}
	if n, _ := h.length("tokenizer.ggml.tokens"); n != 512 {
		t.Errorf("vocabulary of %d tokens, want 512", n)
	}
}

func TestInspectSyntheticModel(t *testing.T) {
	file, _, dataOffset := synthGGUF(t, synthKVs(), synthTensors())
	path := writeTemp(t, file)
	info, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Path: path, Name: "synth", FileSize: int64(len(file)), Architecture: "llama",
		Parameters: synthParams, ParametersText: "301.31 K", Quantization: "Q4_K_M",
		ContextLength: 4096, Layers: 2, HasChatTemplate: true}
	if info != want {
		t.Fatalf("Inspect = %+v\nwant      %+v", info, want)
	}
	if uint64(len(file)) != uint64(dataOffset)+synthWeights {
		t.Fatalf("the synthetic file is %d bytes, want header %d + weights %d", len(file), dataOffset, synthWeights)
	}

	h, err := readGGUF(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if h.WeightBytes != synthWeights || h.UnknownType {
		t.Fatalf("weights %d bytes (unknown type %v), want %d", h.WeightBytes, h.UnknownType, synthWeights)
	}
	if h.DataOffset != int64(dataOffset) || h.Tensors != 6 || h.Version != 3 {
		t.Fatalf("data offset %d, tensors %d, version %d", h.DataOffset, h.Tensors, h.Version)
	}
	// The vocabulary and merges are skipped: only their lengths are kept.
	if v := h.kv["tokenizer.ggml.tokens"]; !v.array || v.n != 300 || v.s != "" {
		t.Fatalf("tokens kept as %+v", v)
	}
	if _, ok := h.kv["tokenizer.ggml.merges"]; ok {
		t.Fatal("merges kept; only keys the library uses are")
	}
}

// withKVs is synthKVs changed: a nil value removes the key, a new key is appended.
func withKVs(changes ...synthKV) []synthKV {
	kvs := synthKVs()
	for _, c := range changes {
		i := 0
		for i < len(kvs) && kvs[i].key != c.key {
			i++
		}
		switch {
		case c.value == nil:
			kvs = append(kvs[:i], kvs[i+1:]...)
		case i < len(kvs):
			kvs[i].value = c.value
		default:
			kvs = append(kvs, c)
		}
	}
	return kvs
}

func TestInspectSyntheticVariants(t *testing.T) {
	tests := []struct {
		name    string
		kvs     []synthKV
		tensors []synthTensor
		check   func(t *testing.T, info Info, h *ggufHeader)
	}{
		{"no file type: the type holding most bytes", withKVs(synthKV{"general.file_type", nil}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.Quantization != "Q4_K" {
					t.Errorf("quantization %q, want Q4_K (89280 bytes, ahead of Q8_0's 81600)", info.Quantization)
				}
			}},
		{"guessed flag on the file type", withKVs(synthKV{"general.file_type", uint32(1024 + 30)}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.Quantization != "IQ4_XS" {
					t.Errorf("quantization %q, want IQ4_XS", info.Quantization)
				}
			}},
		{"unknown file type: the type holding most bytes", withKVs(synthKV{"general.file_type", uint32(999)}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.Quantization != "Q4_K" {
					t.Errorf("quantization %q, want Q4_K", info.Quantization)
				}
			}},
		{"empty chat template", withKVs(synthKV{"tokenizer.chat_template", ""}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.HasChatTemplate {
					t.Error("an empty template counts as a template")
				}
			}},
		{"no chat template", withKVs(synthKV{"tokenizer.chat_template", nil}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.HasChatTemplate {
					t.Error("a template without the key")
				}
			}},
		{"long context, explicit head sizes, per-layer KV heads",
			withKVs(synthKV{"llama.context_length", uint32(131072)},
				synthKV{"llama.attention.head_count_kv", []int32{2, 4}},
				synthKV{"llama.attention.key_length", uint32(64)},
				synthKV{"llama.attention.value_length", uint32(48)}),
			nil,
			func(t *testing.T, info Info, h *ggufHeader) {
				if info.ContextLength != 131072 {
					t.Errorf("context %d", info.ContextLength)
				}
				// A per-layer array keeps its largest element.
				kv, _ := h.uint("llama.attention.head_count_kv")
				k, _ := h.uint("llama.attention.key_length")
				v, _ := h.uint("llama.attention.value_length")
				if kv != 4 || k != 64 || v != 48 {
					t.Errorf("KV heads %d, key %d, value %d; want 4, 64, 48", kv, k, v)
				}
			}},
		{"no context length", withKVs(synthKV{"llama.context_length", nil}), nil,
			func(t *testing.T, info Info, _ *ggufHeader) {
				if info.ContextLength != 0 {
					t.Errorf("context %d", info.ContextLength)
				}
			}},
		{"unknown tensor type: counted, not measured", nil,
			append(synthTensors(), synthTensor{"blk.1.new.weight", []uint64{256, 4}, 200}),
			func(t *testing.T, info Info, h *ggufHeader) {
				if !h.UnknownType || h.WeightBytes != synthWeights || info.Parameters != synthParams+1024 {
					t.Errorf("unknown type %v, weights %d, parameters %d", h.UnknownType, h.WeightBytes, info.Parameters)
				}
				if info.Quantization != "Q4_K_M" {
					t.Errorf("quantization %q", info.Quantization)
				}
			}},
		{"no tensors", nil, []synthTensor{},
			func(t *testing.T, info Info, h *ggufHeader) {
				if info.Parameters != 0 || info.ParametersText != "0" || h.WeightBytes != 0 {
					t.Errorf("parameters %d %q, weights %d", info.Parameters, info.ParametersText, h.WeightBytes)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kvs, tensors := tc.kvs, tc.tensors
			if kvs == nil {
				kvs = synthKVs()
			}
			if tensors == nil {
				tensors = synthTensors()
			}
			file, _, _ := synthGGUF(t, kvs, tensors)
			info, err := Inspect(writeTemp(t, file))
			if err != nil {
				t.Fatal(err)
			}
			h, err := readGGUF(bytes.NewReader(file), int64(len(file)))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, info, h)
		})
	}
}

// TestReadGGUFTruncatedAtEveryByte cuts the synthetic header at every length: each is
// ErrNotGGUF, whether the size says so or the file turns out shorter than its size.
func TestReadGGUFTruncatedAtEveryByte(t *testing.T) {
	file, headerEnd, _ := synthGGUF(t, synthKVs(), synthTensors())
	for n := range headerEnd {
		for _, size := range []int64{int64(n), int64(len(file))} {
			_, err := readGGUF(bytes.NewReader(file[:n]), size)
			if !errors.Is(err, ErrNotGGUF) {
				t.Fatalf("header cut at %d (size %d): %v, want ErrNotGGUF", n, size, err)
			}
			// When the size is honest a count can be refused before the read runs short.
			if n >= 4 && !errors.Is(err, errTruncated) && (size != int64(n) || !errors.Is(err, errTooLarge)) {
				t.Fatalf("header cut at %d (size %d): %v, want a truncated header", n, size, err)
			}
		}
	}
	path := writeTemp(t, file[:headerEnd/2])
	if info, err := Inspect(path); !errors.Is(err, ErrNotGGUF) || info.Err != err || info.FileSize != int64(headerEnd/2) {
		t.Fatalf("Inspect of a cut file: %+v, %v", info, err)
	}
}

// header starts a GGUF v3 header with the given counts.
func header(tensors, kvs uint64) *ggufEnc {
	var e ggufEnc
	e.WriteString("GGUF")
	e.u32(3)
	e.u64(tensors)
	e.u64(kvs)
	return &e
}

func TestReadGGUFRefusesBadHeaders(t *testing.T) {
	pad := func(e *ggufEnc) []byte { return append(e.Bytes(), make([]byte, 64)...) }
	tests := []struct {
		name   string
		file   func() []byte
		reason error
		msg    string // the exact message, when set
	}{
		{"empty", func() []byte { return nil }, errBadMagic, ""},
		{"bad magic", func() []byte { return []byte("GGML\x03\x00\x00\x00 and more bytes") }, errBadMagic,
			`not a GGUF model file: bad magic "GGML" (want "GGUF") at byte 0`},
		{"version 1", func() []byte {
			e := header(0, 0)
			b := e.Bytes()
			b[4] = 1
			return b
		}, errVersion, "not a GGUF model file: unsupported GGUF version 1 (2 and 3 are supported) at byte 4"},
		{"big-endian", func() []byte { return []byte("GGUF\x00\x00\x00\x03" + strings.Repeat("\x00", 16)) }, errBigEndian, ""},
		{"big-endian magic", func() []byte { return []byte("FUGG\x00\x00\x00\x03" + strings.Repeat("\x00", 16)) }, errBigEndian, ""},
		{"key of 2^63 bytes", func() []byte {
			e := header(0, 1)
			e.u64(1 << 63)
			return pad(e)
		}, errTooLarge, ""},
		{"string value of 2^63 bytes", func() []byte {
			e := header(0, 1)
			e.str("general.architecture")
			e.u32(uint32(typeString))
			e.u64(1 << 63)
			return pad(e)
		}, errTooLarge, ""},
		{"kept string over the limit", func() []byte {
			e := header(0, 1)
			e.kv("general.architecture", strings.Repeat("x", maxKeptString+1))
			return e.Bytes()
		}, errTooLarge, ""},
		{"array count larger than the file", func() []byte {
			e := header(0, 1)
			e.str("tokenizer.ggml.tokens")
			e.u32(uint32(typeArray))
			e.u32(uint32(typeString))
			e.u64(1 << 40)
			return pad(e)
		}, errTooLarge, ""},
		{"int array count larger than the file", func() []byte {
			e := header(0, 1)
			e.str("tokenizer.ggml.scores")
			e.u32(uint32(typeArray))
			e.u32(uint32(typeFloat32))
			e.u64(1<<62 + 1) // times 4 wraps to 4: the bound must divide, not multiply
			return pad(e)
		}, errTooLarge, ""},
		{"tensor count larger than the file", func() []byte { return pad(header(1<<40, 0)) }, errTooLarge, ""},
		{"metadata count larger than the file", func() []byte { return pad(header(0, 1<<40)) }, errTooLarge, ""},
		{"nested array", func() []byte {
			e := header(0, 1)
			e.str("x")
			e.u32(uint32(typeArray))
			e.u32(uint32(typeArray))
			e.u64(1)
			return pad(e)
		}, errMalformed, ""},
		{"unknown value type", func() []byte {
			e := header(0, 1)
			e.str("x")
			e.u32(13)
			return pad(e)
		}, errMalformed, ""},
		{"duplicate key", func() []byte {
			e := header(0, 2)
			e.kv("general.architecture", "llama")
			e.kv("general.architecture", "qwen2")
			return e.Bytes()
		}, errMalformed, ""},
		{"alignment not a power of two", func() []byte {
			e := header(0, 1)
			e.kv("general.alignment", uint32(24))
			return e.Bytes()
		}, errMalformed, ""},
		{"five dimensions", func() []byte {
			e := header(1, 0)
			e.str("t")
			e.u32(5)
			return pad(e)
		}, errMalformed, ""},
		{"dimensions overflow", func() []byte {
			e := header(1, 0)
			e.str("t")
			e.u32(2)
			e.u64(1 << 32)
			e.u64(1 << 32)
			e.u32(0)
			e.u64(0)
			return e.Bytes()
		}, errMalformed, ""},
		{"elements not whole blocks", func() []byte {
			e := header(1, 0)
			e.str("t")
			e.u32(1)
			e.u64(100)
			e.u32(12) // Q4_K: blocks of 256
			e.u64(0)
			return e.Bytes()
		}, errMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.file()
			_, err := readGGUF(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, ErrNotGGUF) || !errors.Is(err, tc.reason) {
				t.Fatalf("error %v, want ErrNotGGUF and %v", err, tc.reason)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Fatalf("message %q\nwant      %q", err, tc.msg)
			}
			t.Log(err)
		})
	}
}

// A read error that is not the file ending is passed on, not called "not GGUF".
func TestReadGGUFPassesOnReadErrors(t *testing.T) {
	file, _, _ := synthGGUF(t, synthKVs(), synthTensors())
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(file[:100]), iotest.ErrReader(boom))
	if _, err := readGGUF(r, int64(len(file))); !errors.Is(err, boom) || errors.Is(err, ErrNotGGUF) {
		t.Fatalf("error %v, want the read error", err)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {512, "512 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"},
		{1_153_434, "1.1 MiB"}, {1<<20 - 1, "1 MiB"}, {4_080_218_931, "3.8 GiB"},
		{1 << 40, "1 TiB"}, {1<<64 - 1, "16 EiB"},
	}
	for _, tc := range tests {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestFormatParameters(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1 K"}, {292_800, "292.80 K"}, {1_100_000, "1.10 M"},
		{7_241_732_096, "7.24 B"}, {1_500_000_000_000, "1.50 T"},
	}
	for _, tc := range tests {
		if got := formatParameters(tc.n); got != tc.want {
			t.Errorf("formatParameters(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// FuzzReadGGUF feeds the reader damaged headers: it must return a header or an error
// matching ErrNotGGUF, never panic, and what it returns must be safe to use.
func FuzzReadGGUF(f *testing.F) {
	file, _, dataOffset := synthGGUF(f, synthKVs(), synthTensors())
	f.Add(file[:dataOffset])
	real, err := os.ReadFile(testenv.Model(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real[:min(len(real), 64<<10)])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readGGUF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrNotGGUF) {
				t.Fatalf("error %v does not match ErrNotGGUF", err)
			}
			return
		}
		if h.DataOffset < 0 || h.DataOffset > int64(len(b))+1<<30 {
			t.Fatalf("data offset %d for %d bytes", h.DataOffset, len(b))
		}
		_ = h.quantization()
	})
}
