// Package models owns the GGUF model files on this machine: the library (the models
// folder plus files the user added) with each file's metadata, the memory a worker
// needs (estimate.go), the devices it can use (devices.go) and the downloader.
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
// Err says why and the other fields but Path, Name and FileSize are empty. The memory a
// worker needs is EstimateMemory's (estimate.go), asked for when shown.
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
	Err             error
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
	if !st.Mode().IsRegular() {
		// Opening a FIFO would block until a writer comes, maybe forever.
		info.Err = fmt.Errorf("model %s is %s: %w", path, fileKind(st.Mode()), ErrNotGGUF)
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
	return info, nil
}

// clampInt turns a header count into an int; absurd values stop at MaxInt32.
func clampInt(v uint64, ok bool) int {
	if !ok {
		return 0
	}
	return int(min(v, math.MaxInt32))
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
