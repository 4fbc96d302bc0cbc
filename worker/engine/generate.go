package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/beekeeper-hive/beekeeper/worker/grammar"
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
	// Penalties over the last PenaltyLastN tokens: Repeat 1 = off, Frequency and
	// Presence 0 = off (OpenAI's frequency_penalty and presence_penalty).
	RepeatPenalty    float64
	FrequencyPenalty float64
	PresencePenalty  float64
	Stop             []string
	IgnoreEOS        bool // generate through end-of-generation tokens until MaxTokens
	// Grammar, a llama.cpp GBNF grammar whose start rule is "root", constrains every
	// token (structured output, forced tool calls); "" = none.
	Grammar string
	// Images are the encoded images (PNG, JPEG, ...) of a chat's prompt, one for each
	// MediaMarker in its text, in order (vision.go). Not a setting of the sampler: it
	// rides here because a request reaches Prepare with its prompt and its Sampling.
	Images [][]byte
}

// DefaultSampling returns llama-server's defaults with a random seed.
func DefaultSampling() Sampling {
	return Sampling{Temperature: DefaultTemperature, TopK: DefaultTopK, TopP: DefaultTopP, Seed: rand.Uint32(), RepeatPenalty: 1}
}

// Job is a tokenized, validated request, ready for a slot.
type Job struct {
	tokens   []llama.Token
	sampling Sampling
	stops    [][]byte
	maxNew   int
	media    *media // a prompt with images (vision.go); nil = text only
}

// PromptTokens is the number of prompt tokens, an image's tokens included.
func (j *Job) PromptTokens() int {
	if j.media != nil {
		return j.media.nTokens
	}
	return len(j.tokens)
}

// Result sums up a finished generation.
type Result struct {
	PromptTokens     int
	CachedTokens     int // prompt tokens whose KV came from the prompt cache
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
	job, err := e.tokenize(prompt, parseSpecial, s.Images)
	if err != nil {
		return nil, err
	}
	if err := e.checkSampling(s); err != nil {
		if job.media != nil {
			job.media.free()
		}
		return nil, err
	}
	s.Images = nil // read: the job need not keep them
	job.sampling = s
	if s.MaxTokens > 0 && s.MaxTokens < job.maxNew {
		job.maxNew = s.MaxTokens
	}
	for _, stop := range s.Stop {
		if stop != "" {
			job.stops = append(job.stops, []byte(stop))
		}
	}
	return job, nil
}

// tokenize makes a job of the prompt (and its images) that fits the context, maxNew
// the room left in it.
func (e *Engine) tokenize(prompt string, parseSpecial bool, images [][]byte) (*Job, error) {
	if len(images) > 0 {
		return e.prepareMedia(prompt, parseSpecial, images)
	}
	tokens := llama.Tokenize(e.vocab, prompt, true, parseSpecial)
	if len(tokens) == 0 {
		return nil, errors.New("the prompt is empty")
	}
	if len(tokens) >= e.ctxSize {
		return nil, &ContextExceededError{PromptTokens: len(tokens), ContextSize: e.ctxSize}
	}
	return &Job{tokens: tokens, maxNew: e.ctxSize - len(tokens)}, nil
}

// checkSampling checks what llama.cpp must accept of s: its penalties and its grammar.
func (e *Engine) checkSampling(s Sampling) error {
	if usesPenalties(s) {
		p := llama.SamplerInitPenalties(llama.VocabNTokens(e.vocab), PenaltyLastN, 1, 0, 0)
		if p == 0 {
			return errors.New("llama.cpp made no penalties sampler")
		}
		llama.SamplerFree(p)
	}
	if s.Grammar != "" {
		if strings.IndexByte(s.Grammar, 0) >= 0 {
			return ErrNUL
		}
		// Parse it here, on the request's goroutine, so a bad grammar is the request's
		// error rather than a sequence that cannot sample.
		g, err := grammar.NewSampler(e.vocab, s.Grammar)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrGrammar, err)
		}
		llama.SamplerFree(g)
	}
	return nil
}

// ErrGrammar is returned by Prepare for a grammar llama.cpp cannot parse.
var ErrGrammar = errors.New("llama.cpp could not parse the grammar")

func usesPenalties(s Sampling) bool {
	return (s.RepeatPenalty != 0 && s.RepeatPenalty != 1) || s.FrequencyPenalty != 0 || s.PresencePenalty != 0
}

// PenaltyLastN is how many recent tokens the penalties look at (llama-server's default).
const PenaltyLastN = 64

// newSampler builds a request's own chain, in llama-server's order: penalties, top-k,
// top-p, temperature, then the seeded draw (or greedy at temperature 0).
func newSampler(vocab llama.Vocab, s Sampling) llama.Sampler {
	chain := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	if s.Grammar != "" { // first: the others choose among the tokens it allows
		// The grammar reads BOS as its text "<s>", which fits inside any JSON string,
		// but the scheduler takes BOS for the end (small models mean that by it): the
		// answer would stop mid-string. A grammar's answer ends with its own EOS. Where
		// BOS is also an end-of-generation token (one token for both), the grammar
		// already allows it only at the end, and banning it would leave no way to end.
		if bos := llama.VocabBOS(vocab); bos >= 0 && !llama.VocabIsEOG(vocab, bos) {
			bias := llama.LogitBias{Token: bos, Bias: float32(math.Inf(-1))}
			llama.SamplerChainAdd(chain, llama.SamplerInitLogitBias(llama.VocabNTokens(vocab), 1, &bias))
		}
		if g, err := grammar.NewSampler(vocab, s.Grammar); err == nil {
			llama.SamplerChainAdd(chain, g) // Prepare parsed it once already: err is not expected
		}
	}
	if usesPenalties(s) {
		repeat := s.RepeatPenalty
		if repeat == 0 {
			repeat = 1
		}
		// This llama.cpp's prototype takes n_vocab first (yzma v1.28.0 declares it so;
		// a 4-argument binding left penalty_last_n to chance, measured).
		llama.SamplerChainAdd(chain, llama.SamplerInitPenalties(llama.VocabNTokens(vocab), PenaltyLastN,
			float32(repeat), float32(s.FrequencyPenalty), float32(s.PresencePenalty)))
	}
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
