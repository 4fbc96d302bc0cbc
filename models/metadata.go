// Package models owns the GGUF model files on this machine: the library (the models
// folder plus files the user added) with each file's metadata, and the downloader.
package models

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Info is what the library shows about one GGUF file. When the file cannot be read,
// Err says why and the other fields but Path, Name and FileSize are empty.
type Info struct {
	Path            string
	Name            string // the name a worker serves it under (wire.ModelName)
	FileSize        int64
	Architecture    string // "llama"
	Parameters      uint64 // 292800
	ParametersText  string // "292.80 K"
	Quantization    string // "F32", "Q4_K_M"
	ContextLength   int    // the context it was trained for
	Layers          int    // block count
	HasChatTemplate bool
	// MemoryEstimate is the RAM a CPU-only worker needs at a context of MemoryContext
	// tokens (weights, KV cache and compute buffers); see estimateMemory.
	MemoryEstimate uint64
	MemoryContext  int
	Err            error
}

// ErrNotGGUF means a file is not a GGUF model (wrong magic, truncated, or damaged).
var ErrNotGGUF = errors.New("not a GGUF model file")

// Inspect reads path's GGUF header (see gguf.go). The returned Info always has Path and
// FileSize when the file exists; Info.Err and the returned error are set together.
func Inspect(path string) (Info, error) {
	info := Info{Path: path, Name: modelName(path)}
	st, err := os.Stat(path)
	if err != nil {
		info.Err = fmt.Errorf("model %s: %w", path, err)
		return info, info.Err
	}
	info.FileSize = st.Size()
	if st.IsDir() {
		info.Err = fmt.Errorf("model %s is a folder: %w", path, ErrNotGGUF)
		return info, info.Err
	}
	f, err := os.Open(path)
	if err != nil {
		info.Err = fmt.Errorf("model %s: %w", path, err)
		return info, info.Err
	}
	defer f.Close()
	h, err := readGGUF(f, info.FileSize)
	if err != nil {
		info.Err = fmt.Errorf("model %s: %w", path, err)
		return info, info.Err
	}
	arch := h.str("general.architecture")
	info.Architecture = arch
	info.Parameters = h.Params
	info.ParametersText = formatParameters(h.Params)
	info.Quantization = h.quantization()
	info.ContextLength = clampInt(h.uint(arch + ".context_length"))
	info.Layers = clampInt(h.uint(arch + ".block_count"))
	info.HasChatTemplate = h.nonEmptyString("tokenizer.chat_template")
	info.MemoryContext = EstimateContextCap
	if info.ContextLength > 0 {
		info.MemoryContext = min(info.ContextLength, EstimateContextCap)
	}
	info.MemoryEstimate = estimateMemory(h, info.FileSize, info.MemoryContext).total()
	return info, nil
}

// clampInt turns a header count into an int; absurd values stop at MaxInt32.
func clampInt(v uint64, ok bool) int {
	if !ok {
		return 0
	}
	return int(min(v, math.MaxInt32))
}

// EstimateContextCap bounds the context the memory estimate assumes: models trained for
// 128K tokens are rarely run at it, and the full figure would scare for no reason. It is
// also the context assumed when the file does not say.
const EstimateContextCap = 8192

// memoryParts is the memory estimate by part, in bytes.
type memoryParts struct {
	Header  uint64 // metadata and vocabulary, read whole by llama.cpp
	Weights uint64 // tensor data, mapped and all touched on CPU
	KV      uint64 // the f16 KV cache
	Compute uint64 // llama.cpp's compute buffer
}

func (m memoryParts) total() uint64 {
	return satAdd(satAdd(m.Header, m.Weights), satAdd(m.KV, m.Compute))
}

// The compute buffer allowance is 4 MiB + n_batch × 4 × (n_vocab + 16 × n_embd + ctx)
// bytes. A worker runs llama.cpp with n_batch = n_ubatch = min(ctx, 512) and flash
// attention on (its "auto" picks it on CPU), so no per-head attention scores are held;
// the buffer peaks at the logits (n_vocab × n_batch f32) or at a layer's activations (a
// few n_embd-wide f32 rows per token plus three FFN intermediates of n_ff ≈ 3–4 ×
// n_embd), and holds the attention mask (ctx × n_batch). Adding these instead of taking
// the largest errs on the high side, the side to err on. The 4 MiB is the scheduler's and
// graph's own overhead.
const (
	maxBatch           = 512
	activationFactor   = 16
	computeOverhead    = 4 << 20
	f32Bytes, f16Bytes = 4, 2
)

// estimateMemory is the RAM llama.cpp needs on CPU for the model in h at ctx tokens:
// the file's header and weights, the KV cache and the compute buffer.
//
// KV cache = block_count × ctx × (n_embd_k_gqa + n_embd_v_gqa) × 2 bytes (f16), with
// n_embd_k_gqa = key_length × head_count_kv (key_length defaults to
// embedding_length/head_count, head_count_kv to head_count) and likewise for values.
// Per-layer arrays (hybrid models) count their largest entry for every layer.
func estimateMemory(h *ggufHeader, fileSize int64, ctx int) memoryParts {
	arch := h.str("general.architecture")
	get := func(key string) uint64 { v, _ := h.uint(arch + "." + key); return v }

	var m memoryParts
	data := uint64(max(fileSize-h.DataOffset, 0))
	m.Header = uint64(min(h.DataOffset, max(fileSize, 0)))
	// The whole file is mapped, alignment padding included; when a tensor type is
	// unknown the file is the only measure of the weights.
	m.Weights = data
	if !h.UnknownType {
		m.Weights = max(h.WeightBytes, data)
	}

	embd, heads := get("embedding_length"), get("attention.head_count")
	headsKV, ok := h.uint(arch + ".attention.head_count_kv")
	if !ok {
		headsKV = heads
	}
	var headDim uint64
	if heads > 0 {
		headDim = embd / heads
	}
	keyLen, ok := h.uint(arch + ".attention.key_length")
	if !ok {
		keyLen = headDim
	}
	valLen, ok := h.uint(arch + ".attention.value_length")
	if !ok {
		valLen = headDim
	}
	c := uint64(max(ctx, 0))
	perToken := satMul(satAdd(satMul(keyLen, headsKV), satMul(valLen, headsKV)), f16Bytes)
	m.KV = satMul(satMul(get("block_count"), c), perToken)

	vocab, ok := h.length("tokenizer.ggml.tokens")
	if !ok {
		vocab = get("vocab_size")
	}
	batch := min(c, maxBatch)
	perRow := satAdd(satAdd(vocab, satMul(embd, activationFactor)), c)
	m.Compute = satAdd(computeOverhead, satMul(satMul(batch, f32Bytes), perRow))
	return m
}

// FormatBytes is n bytes for people, in binary units: "512 B", "1.1 MiB", "3.8 GiB".
func FormatBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n)/1024, 0
	// Move up while the rounded figure would read 1024 or more.
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + units[i]
}

// formatParameters is a parameter count in decimal units, as the Models screen has
// always shown it: "292.80 K", "1.10 M", "7.24 B".
func formatParameters(n uint64) string {
	units := []struct {
		base float64
		name string
	}{{1e15, "Q"}, {1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}}
	for _, u := range units {
		if float64(n) >= u.base {
			return strings.TrimSuffix(strconv.FormatFloat(float64(n)/u.base, 'f', 2, 64), ".00") + " " + u.name
		}
	}
	return strconv.FormatUint(n, 10)
}
