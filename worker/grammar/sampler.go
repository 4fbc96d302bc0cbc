package grammar

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// ErrInvalidGrammar is matched when llama.cpp refuses a grammar.
var ErrInvalidGrammar = errors.New("llama.cpp refused the grammar")

// NewSampler is llama.cpp's grammar sampler for gbnf, starting at rule "root". It
// checks what SamplerInitGrammar leaves unsaid: llama.cpp answers a grammar it cannot
// parse with no sampler (0), which SamplerChainAdd then skips without a word, and it
// takes an empty grammar (or one yzma cannot pass, holding NUL) as no grammar at all.
// The caller frees the sampler, or hands it to a chain that does.
func NewSampler(vocab llama.Vocab, gbnf string) (llama.Sampler, error) {
	if strings.TrimSpace(gbnf) == "" || strings.IndexByte(gbnf, 0) >= 0 {
		return 0, fmt.Errorf("%w: it is empty or holds a NUL byte", ErrInvalidGrammar)
	}
	if vocab == 0 {
		return 0, fmt.Errorf("%w: no vocabulary", ErrInvalidGrammar)
	}
	s := llama.SamplerInitGrammar(vocab, gbnf, "root")
	if s == 0 {
		return 0, fmt.Errorf("%w: it does not parse, lacks a root rule, or is left-recursive", ErrInvalidGrammar)
	}
	return s, nil
}
