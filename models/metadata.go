// Package models owns the GGUF model files on this machine: the library (the models
// folder plus files the user added) with each file's metadata, and the downloader.
package models

import (
	"errors"
	"fmt"
	"os"

	gguf "github.com/gpustack/gguf-parser-go"
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
	// tokens (weights, KV cache and compute buffers), per gguf-parser's llama.cpp estimate.
	MemoryEstimate uint64
	MemoryContext  int
	Err            error
}

// ErrNotGGUF means a file is not a GGUF model (wrong magic, truncated, or damaged).
var ErrNotGGUF = errors.New("not a GGUF model file")

// Inspect reads path's GGUF header. The returned Info always has Path and FileSize when
// the file exists; Info.Err and the returned error are set together.
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
	f, err := parse(path)
	if err != nil {
		info.Err = err
		return info, err
	}
	md, arch := f.Metadata(), f.Architecture()
	info.Architecture = arch.Architecture
	info.Parameters = uint64(md.Parameters)
	info.ParametersText = md.Parameters.String()
	info.Quantization = md.FileTypeDescriptor
	info.ContextLength = int(arch.MaximumContextLength)
	info.Layers = int(arch.BlockCount)
	_, info.HasChatTemplate = f.Header.MetadataKV.Get("tokenizer.chat_template")
	info.MemoryContext = min(info.ContextLength, EstimateContextCap)
	info.MemoryEstimate = estimateMemory(f, info.MemoryContext)
	return info, nil
}

// parse wraps the parser, which can panic on hostile headers, so a bad file becomes an
// error on its row instead of taking the app down.
func parse(path string) (f *gguf.GGUFFile, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("model %s: %w (parser: %v)", path, ErrNotGGUF, r)
		}
	}()
	f, err = gguf.ParseGGUFFile(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w (%w)", path, ErrNotGGUF, err)
	}
	return f, nil
}

// EstimateContextCap bounds the context the memory estimate assumes: models trained for
// 128K tokens are rarely run at it, and the full figure would scare for no reason.
const EstimateContextCap = 8192

func estimateMemory(f *gguf.GGUFFile, ctx int) (bytes uint64) {
	defer func() {
		if recover() != nil {
			bytes = 0 // an estimate is a nicety; a parser panic must not cost the row
		}
	}()
	opts := []gguf.GGUFRunEstimateOption{gguf.WithLLaMACppOffloadLayers(0)}
	if ctx > 0 {
		opts = append(opts, gguf.WithLLaMACppContextSize(int32(ctx)))
	}
	e := f.EstimateLLaMACppRun(opts...)
	return uint64(e.SummarizeItem(true, 0, 0).RAM.NonUMA)
}
