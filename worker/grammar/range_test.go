package grammar

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// rangeRegexp turns intRange's GBNF (literals, digit classes, groups) into a regexp.
func rangeRegexp(t *testing.T, a, b int64) *regexp.Regexp {
	t.Helper()
	g := group(intRange(a, b))
	g = strings.NewReplacer(`"`, "", " ", "").Replace(g)
	return regexp.MustCompile("^(?:" + g + ")$")
}

// TestIntRangeExhaustive checks every number up to 2500 against ranges around the
// digit-count and carry edges.
func TestIntRangeExhaustive(t *testing.T) {
	ranges := [][2]int64{{0, 0}, {0, 9}, {0, 10}, {1, 9}, {5, 5}, {7, 13}, {0, 120}, {9, 10}, {10, 99},
		{19, 21}, {99, 100}, {100, 999}, {101, 998}, {123, 1987}, {0, 2000}, {250, 251}, {999, 1000}, {1000, 2500}}
	for _, r := range ranges {
		re := rangeRegexp(t, r[0], r[1])
		for n := int64(0); n <= 2500; n++ {
			in := n >= r[0] && n <= r[1]
			if got := re.MatchString(strconv.FormatInt(n, 10)); got != in {
				t.Fatalf("[%d, %d] matches %d: %v, want %v (%s)", r[0], r[1], n, got, in, re)
			}
		}
		for _, s := range []string{"", "00", "01", "-1", "007"} {
			if re.MatchString(s) {
				t.Errorf("[%d, %d] matches %q", r[0], r[1], s)
			}
		}
	}
}

// TestIntRangeLarge spot-checks random wide ranges up to 15 digits.
func TestIntRangeLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		a, b := rng.Int64N(maxMagnitude), rng.Int64N(maxMagnitude)
		if a > b {
			a, b = b, a
		}
		re := rangeRegexp(t, a, b)
		for _, n := range []int64{a, b, a - 1, b + 1, (a + b) / 2, a + rng.Int64N(b-a+1), rng.Int64N(maxMagnitude)} {
			if n < 0 {
				continue
			}
			in := n >= a && n <= b
			if got := re.MatchString(strconv.FormatInt(n, 10)); got != in {
				t.Fatalf("[%d, %d] matches %d: %v, want %v", a, b, n, got, in)
			}
		}
	}
}
