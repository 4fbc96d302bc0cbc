package grammar

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// num converts number and integer schemas; bounds become digit ranges.
func (c *converter) num(s *object, path, hint string, integer bool) (string, error) {
	b, err := readBounds(s, path, integer)
	if err != nil {
		return "", err
	}
	if !b.hasLo && !b.hasHi {
		if integer {
			return c.prim("integer"), nil
		}
		return c.prim("number"), nil
	}
	var exprs []string
	// v >= 0: magnitudes from max(lo, 0).
	if !b.hasHi || b.hi > 0 || b.hi == 0 && !b.hiOpen {
		lo, loOpen := int64(0), false
		if b.hasLo && b.lo >= 0 {
			lo, loOpen = b.lo, b.loOpen
		}
		hi, hiOpen := int64(maxMagnitude), false
		if b.hasHi {
			hi, hiOpen = b.hi, b.hiOpen
		}
		exprs = append(exprs, c.magnitudes(lo, loOpen, hi, hiOpen, integer)...)
	}
	// v < 0: magnitudes above max(-hi, 0), never -0.
	if !b.hasLo || b.lo < 0 {
		lo, loOpen := int64(0), true
		if b.hasHi && b.hi < 0 {
			lo, loOpen = -b.hi, b.hiOpen
		}
		hi, hiOpen := int64(maxMagnitude), false
		if b.hasLo {
			hi, hiOpen = -b.lo, b.loOpen
		}
		for _, e := range c.magnitudes(lo, loOpen, hi, hiOpen, integer) {
			exprs = append(exprs, `"-" `+e)
		}
	}
	if len(exprs) == 0 {
		return "", schemaError(path, "no value within the bounds (at most %d integer digits)", len(strconv.Itoa(maxMagnitude)))
	}
	return c.define(hint, strings.Join(exprs, " | ")), nil
}

// magnitudes are the alternatives for m in [lo, hi] (each end open or closed,
// 0 <= lo): integer parts taking any fraction, the open lower end with a non-zero
// fraction, the closed upper end alone; for integers, the whole numbers within.
func (c *converter) magnitudes(lo int64, loOpen bool, hi int64, hiOpen bool, integer bool) []string {
	if integer {
		if loOpen {
			lo++
		}
		if hiOpen {
			hi--
		}
		if lo > hi {
			return nil
		}
		return []string{group(intRange(lo, hi))}
	}
	var out []string
	anyLo := lo
	if loOpen {
		anyLo = lo + 1
	}
	if anyLo <= hi-1 {
		out = append(out, group(intRange(anyLo, hi-1))+" "+c.prim("frac")+"?")
	}
	if loOpen && lo+1 <= hi {
		out = append(out, lit(strconv.FormatInt(lo, 10))+" "+c.prim("frac-nz"))
	}
	if !hiOpen && (hi > lo || hi == lo && !loOpen) {
		out = append(out, lit(strconv.FormatInt(hi, 10)))
	}
	return out
}

// bounds are a number schema's limits, clamped to the generated digits. Integer
// schemas get closed integer ends.
type bounds struct {
	lo, hi         int64
	hasLo, hasHi   bool
	loOpen, hiOpen bool
}

func readBounds(s *object, path string, integer bool) (bounds, error) {
	var b bounds
	read := func(k string) (*big.Rat, bool, error) {
		v, ok := s.get(k)
		if !ok {
			return nil, false, nil
		}
		if _, isBool := v.(bool); isBool {
			return nil, false, &UnsupportedError{Keyword: k, Path: path, Reason: "the draft-4 boolean form is not supported; give the bound itself"}
		}
		n, isNum := v.(json.Number)
		r, okRat := new(big.Rat).SetString(fmt.Sprint(n))
		if !isNum || !okRat {
			return nil, false, schemaError(path, "%s must be a number", k)
		}
		if !integer && !r.IsInt() {
			return nil, false, &UnsupportedError{Keyword: k, Path: path, Reason: "only whole-number bounds are supported on type number"}
		}
		return r, true, nil
	}
	limit := new(big.Rat).SetInt64(maxMagnitude)
	clamp := func(r *big.Rat) int64 {
		if r.Cmp(limit) > 0 {
			return maxMagnitude
		}
		if r.Cmp(new(big.Rat).Neg(limit)) < 0 {
			return -maxMagnitude
		}
		return ratFloor(r)
	}
	for _, k := range []string{"minimum", "exclusiveMinimum"} {
		r, ok, err := read(k)
		if err != nil {
			return b, err
		}
		if !ok {
			continue
		}
		open := k == "exclusiveMinimum"
		var v int64
		switch {
		case integer && open:
			v, open = clamp(r)+1, false // floor(r) + 1 is the first integer above r
		case integer:
			v = -clamp(new(big.Rat).Neg(r)) // ceil(r)
		default:
			v = clamp(r)
		}
		if !b.hasLo || v > b.lo || v == b.lo && open {
			b.lo, b.loOpen, b.hasLo = v, open, true
		}
	}
	for _, k := range []string{"maximum", "exclusiveMaximum"} {
		r, ok, err := read(k)
		if err != nil {
			return b, err
		}
		if !ok {
			continue
		}
		open := k == "exclusiveMaximum"
		v := clamp(r) // floor(r)
		if integer && open {
			v, open = -clamp(new(big.Rat).Neg(r))-1, false // ceil(r) - 1
		}
		if !b.hasHi || v < b.hi || v == b.hi && open {
			b.hi, b.hiOpen, b.hasHi = v, open, true
		}
	}
	return b, nil
}

// ratFloor is the largest integer not above r (r within int64).
func ratFloor(r *big.Rat) int64 {
	q := new(big.Int).Div(r.Num(), r.Denom()) // Euclidean: floors for a positive divisor
	return q.Int64()
}

// group parenthesizes alternatives that are more than one.
func group(alts []string) string {
	if len(alts) == 1 {
		return alts[0]
	}
	return "(" + strings.Join(alts, " | ") + ")"
}

// intRange is the alternatives matching the decimal integers in [a, b], 0 <= a <= b,
// without leading zeros: one run per number of digits.
func intRange(a, b int64) []string {
	var out []string
	for a <= b {
		end := b
		if p := nextPow10(a); p-1 < b {
			end = p - 1
		}
		out = append(out, sameLength(strconv.FormatInt(a, 10), strconv.FormatInt(end, 10))...)
		a = end + 1
	}
	return out
}

// nextPow10 is the smallest power of ten above n.
func nextPow10(n int64) int64 {
	p := int64(10)
	for p <= n {
		p *= 10
	}
	return p
}

// sameLength matches the numbers from lo to hi, strings of equal length.
func sameLength(lo, hi string) []string {
	n := len(lo)
	if n == 1 {
		return []string{digits(lo[0], hi[0])}
	}
	if lo[0] == hi[0] {
		return []string{lit(lo[:1]) + " " + group(sameLength(lo[1:], hi[1:]))}
	}
	zeros, nines := strings.Repeat("0", n-1), strings.Repeat("9", n-1)
	var out []string
	first, last := lo[0], hi[0]
	if lo[1:] != zeros {
		out = append(out, lit(lo[:1])+" "+group(sameLength(lo[1:], nines)))
		first++
	}
	var tail string
	if hi[1:] != nines {
		tail = lit(hi[:1]) + " " + group(sameLength(zeros, hi[1:]))
		last--
	}
	if first <= last {
		out = append(out, digits(first, last)+" "+repeat("[0-9]", n-1, n-1))
	}
	if tail != "" {
		out = append(out, tail)
	}
	return out
}

// digits is a class of the digits from a to b.
func digits(a, b byte) string {
	if a == b {
		return lit(string(a))
	}
	return fmt.Sprintf("[%c-%c]", a, b)
}
