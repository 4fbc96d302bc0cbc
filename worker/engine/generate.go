package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// Sampling defaults, llama-server's.
const (
	DefaultTemperature = 0.8
	DefaultTopK        = 40
	DefaultTopP        = 0.95
)

// Finish reasons of a generation.
const (
	FinishStop   = "stop"   // end of generation token or a stop string
	FinishLength = "length" // max_tokens reached or the context is full
)

// Sampling are a request's generation settings, defaults already applied.
type Sampling struct {
	Temperature float64 // 0 = greedy
	TopK        int     // 0 = off
	TopP        float64 // 1 = off
	Seed        uint32
	MaxTokens   int // 0 = until the context is full
	Stop        []string
	IgnoreEOS   bool // generate through end-of-generation tokens until MaxTokens
}

// DefaultSampling returns llama-server's defaults with a random seed.
func DefaultSampling() Sampling {
	return Sampling{Temperature: DefaultTemperature, TopK: DefaultTopK, TopP: DefaultTopP, Seed: rand.Uint32()}
}

// Job is a tokenized, validated request, ready for a slot.
type Job struct {
	tokens   []llama.Token
	sampling Sampling
	stops    [][]byte
	maxNew   int
}

// PromptTokens is the number of prompt tokens.
func (j *Job) PromptTokens() int { return len(j.tokens) }

// Result sums up a finished generation.
type Result struct {
	PromptTokens     int
	CompletionTokens int
	FinishReason     string
}

// Prepare tokenizes prompt (parseSpecial: the prompt came from a chat template that names
// special tokens) and checks it fits: a *ContextExceededError when it does not.
func (e *Engine) Prepare(prompt string, parseSpecial bool, s Sampling) (*Job, error) {
	// yzma hands llama.cpp a nil pointer for a string holding NUL, and llama_tokenize
	// aborts the process on it: no request may get that far.
	if strings.IndexByte(prompt, 0) >= 0 {
		return nil, ErrNUL
	}
	tokens := llama.Tokenize(e.vocab, prompt, true, parseSpecial)
	if len(tokens) == 0 {
		return nil, errors.New("the prompt is empty")
	}
	if len(tokens) >= e.ctxSize {
		return nil, &ContextExceededError{PromptTokens: len(tokens), ContextSize: e.ctxSize}
	}
	room := e.ctxSize - len(tokens)
	maxNew := room
	if s.MaxTokens > 0 && s.MaxTokens < room {
		maxNew = s.MaxTokens
	}
	job := &Job{tokens: tokens, sampling: s, maxNew: maxNew}
	for _, stop := range s.Stop {
		if stop != "" {
			job.stops = append(job.stops, []byte(stop))
		}
	}
	return job, nil
}

// Slot is one llama.cpp context; one generation runs on it at a time.
type Slot struct {
	e     *Engine
	lctx  llama.Context
	mem   llama.Memory
	one   [1]llama.Token
	piece []byte
	text  []byte
}

// Run generates for job on the calling goroutine (no hop per token), handing emit each
// piece of text that is final: stop strings are cut off and never sent, and a piece never
// ends inside a UTF-8 character. emit's slice is only valid during the call. Run stops at
// once when ctx ends (a dropped client) and then returns ctx's error with the counts so far.
func (s *Slot) Run(ctx context.Context, job *Job, emit func(text []byte) error) (Result, error) {
	res := Result{PromptTokens: len(job.tokens)}
	if err := llama.MemoryClear(s.mem, true); err != nil {
		return res, fmt.Errorf("clear context memory: %w", err)
	}
	smpl := newSampler(job.sampling)
	defer llama.SamplerFree(smpl)

	// The prompt goes in batches, so a dropped client also stops a long prompt.
	for i := 0; i < len(job.tokens); i += s.e.nBatch {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		end := min(i+s.e.nBatch, len(job.tokens))
		if err := s.decode(job.tokens[i:end]); err != nil {
			return res, err
		}
	}

	st := stopper{stops: job.stops, text: s.text[:0]}
	defer func() { s.text = st.text[:0] }() // keep the grown buffer for the next request
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		tok := llama.SamplerSample(smpl, s.lctx, -1)
		// Small models sometimes emit BOS where they mean "the end".
		if !job.sampling.IgnoreEOS && (llama.VocabIsEOG(s.e.vocab, tok) || tok == s.e.bos) {
			res.FinishReason = FinishStop
			return res, st.flush(emit)
		}
		n := llama.TokenToPiece(s.e.vocab, tok, s.piece, 0, false)
		if n < 0 {
			s.piece = make([]byte, -n)
			n = llama.TokenToPiece(s.e.vocab, tok, s.piece, 0, false)
		}
		res.CompletionTokens++
		stopped, err := st.add(s.piece[:max(n, 0)], emit)
		if err != nil || stopped {
			res.FinishReason = FinishStop
			return res, err
		}
		if res.CompletionTokens >= job.maxNew {
			res.FinishReason = FinishLength
			return res, st.flush(emit)
		}
		s.one[0] = tok
		if err := s.decode(s.one[:]); err != nil {
			return res, err
		}
	}
}

func (s *Slot) decode(tokens []llama.Token) error {
	rc, err := llama.Decode(s.lctx, llama.BatchGetOne(tokens))
	if err != nil {
		return fmt.Errorf("llama_decode: %w", err)
	}
	if rc != 0 {
		return fmt.Errorf("llama_decode returned %d", rc)
	}
	return nil
}

func newSampler(s Sampling) llama.Sampler {
	chain := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	if s.Temperature <= 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitGreedy())
		return chain
	}
	if s.TopK > 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopK(int32(s.TopK)))
	}
	if s.TopP > 0 && s.TopP < 1 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopP(float32(s.TopP), 1))
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitTemp(float32(s.Temperature)))
	llama.SamplerChainAdd(chain, llama.SamplerInitDist(s.Seed))
	return chain
}

// stopper holds back text that may still turn into a stop string or that ends inside a
// UTF-8 character, and cuts the text at the first stop string.
type stopper struct {
	stops [][]byte
	text  []byte // everything generated
	sent  int    // bytes of text already emitted
}

// add appends piece and emits what is final. It reports whether a stop string was hit.
func (st *stopper) add(piece []byte, emit func([]byte) error) (bool, error) {
	st.text = append(st.text, piece...)
	if len(st.stops) == 0 {
		return false, st.emitUpTo(utf8Boundary(st.text, st.sent), emit)
	}
	// Cut at the earliest stop in the text, not the first one in the list: with stops
	// ["\n", "."] and "Hi.\nBye" the answer is "Hi" (both cuts leave the same text on a tie).
	cut := -1
	for _, stop := range st.stops {
		// A stop string can only newly appear in the part not yet emitted plus a tail.
		from := max(st.sent-len(stop)+1, 0)
		if i := bytes.Index(st.text[from:], stop); i >= 0 && (cut < 0 || from+i < cut) {
			cut = from + i
		}
	}
	if cut >= 0 {
		return true, st.emitUpTo(cut, emit)
	}
	safe := len(st.text)
	for _, stop := range st.stops {
		for k := min(len(stop)-1, len(st.text)-st.sent); k > 0; k-- {
			if bytes.HasSuffix(st.text, stop[:k]) {
				safe = min(safe, len(st.text)-k)
				break
			}
		}
	}
	return false, st.emitUpTo(utf8Boundary(st.text[:safe], st.sent), emit)
}

// flush emits whatever is held back: the generation ended without a stop string.
func (st *stopper) flush(emit func([]byte) error) error {
	return st.emitUpTo(len(st.text), emit)
}

func (st *stopper) emitUpTo(end int, emit func([]byte) error) error {
	if end <= st.sent {
		return nil
	}
	chunk := st.text[st.sent:end]
	st.sent = end
	return emit(chunk)
}

// utf8Boundary is the length of b without a trailing incomplete UTF-8 character, never
// below floor.
func utf8Boundary(b []byte, floor int) int {
	end := len(b)
	for i := 1; i <= utf8.UTFMax && end-i >= floor; i++ {
		c := b[end-i]
		if c < utf8.RuneSelf {
			return end // ASCII: complete
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[end-i:]) {
				return end
			}
			return end - i
		}
	}
	return end
}
