// Command synthmodel writes a random-weight llama GGUF model for benchmarks:
//
//	go run ./internal/synthmodel/cmd/synthmodel -preset m272 -out /tmp/synth/m272.gguf
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "synthmodel:", err)
		os.Exit(1)
	}
}

func run() error {
	var names []string
	for name := range synthmodel.Presets {
		names = append(names, name)
	}
	slices.Sort(names)

	preset := flag.String("preset", "m272", "shape preset: "+strings.Join(names, ", "))
	out := flag.String("out", "", "the GGUF file to write (required)")
	tok := flag.String("tokenizer", filepath.Join("..", "shared", "models", "stories260K.gguf"),
		"GGUF file whose tokenizer the model gets (the default is the test model, from the repo root)")
	seed := flag.Uint64("seed", 1, "random seed of the weights")
	layers := flag.Int("layers", 0, "transformer blocks (0 = the preset's)")
	embd := flag.Int("embd", 0, "hidden size, a multiple of 32 (0 = the preset's)")
	ff := flag.Int("ff", 0, "feed-forward size, a multiple of 32 (0 = the preset's)")
	heads := flag.Int("heads", 0, "attention heads (0 = the preset's)")
	headsKV := flag.Int("heads-kv", 0, "key/value heads (0 = the preset's)")
	ctx := flag.Int("ctx", 0, "training context (0 = the preset's)")
	flag.Parse()

	if *out == "" {
		flag.Usage()
		return fmt.Errorf("-out is required")
	}
	s, ok := synthmodel.Presets[*preset]
	if !ok {
		return fmt.Errorf("no preset %q (have %s)", *preset, strings.Join(names, ", "))
	}
	for _, o := range []struct {
		flag int
		dst  *int
	}{{*layers, &s.Layers}, {*embd, &s.Embd}, {*ff, &s.FF}, {*heads, &s.Heads}, {*headsKV, &s.HeadsKV}, {*ctx, &s.CtxTrain}} {
		if o.flag != 0 {
			*o.dst = o.flag
		}
	}
	// A custom head count keeps the preset's kv heads only where they still divide it.
	if *heads != 0 && *headsKV == 0 && s.Heads%s.HeadsKV != 0 {
		s.HeadsKV = s.Heads
	}

	vocab, err := synthmodel.VocabSize(*tok)
	if err != nil {
		return fmt.Errorf("%w (name a GGUF model with -tokenizer)", err)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := synthmodel.Write(*out, s, *tok, *seed); err != nil {
		return err
	}
	elapsed := time.Since(start)
	fi, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Printf("shape %s, vocab %d: %d parameters (%.1fM)\n", s, vocab, s.Params(vocab), float64(s.Params(vocab))/1e6)
	fmt.Printf("wrote %s: %d bytes (%.1f MB) in %s\n", *out, fi.Size(), float64(fi.Size())/1e6, elapsed.Round(time.Millisecond))
	return nil
}
