package spawner

import (
	"os"
	"testing"
	"time"
)

// A command name with spaces and parentheses does not shift the fields.
func TestParseStatCountsFieldsFromTheLastParen(t *testing.T) {
	line := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 50 0 0 20 0 7 0 98765 10000000 300 18446744073709551615\n"
	s, err := parseStat([]byte(line), 10*time.Millisecond, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu != 3*time.Second || s.threads != 7 || s.start != 98765 || s.rss != 300*4096 {
		t.Errorf("parsed %+v", s)
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2 3"), time.Millisecond, 4096); err == nil {
		t.Error("a truncated line parsed")
	}
}

// Sampling every worker every second for as long as the app runs makes a handful of
// small allocations (the open file, the result), not a copy of every file it reads.
func TestSamplerAllocatesLittle(t *testing.T) {
	s := NewSampler()
	pids := map[string]int{"self": os.Getpid()}
	if got := s.Sample(pids); len(got) != 1 {
		t.Fatalf("sampled %+v, want this process", got)
	}
	n := testing.AllocsPerRun(50, func() { s.Sample(pids) })
	t.Logf("%.0f allocations per sample", n)
	if n > 8 {
		t.Errorf("%.0f allocations per sample of one process", n)
	}
}
