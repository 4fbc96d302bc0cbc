package spawner

import (
	"os/exec"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// A spinning shell: its CPU % is near a whole core, its figures agree with gopsutil's,
// and once it has exited it is left out of the sample.
func TestSamplerMeasuresABusyProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	pids := map[string]int{"w": pid}

	s := NewSampler()
	first := s.Sample(pids)
	if st, ok := first["w"]; !ok || st.CPUPercent != 0 || st.PID != pid {
		t.Fatalf("first sample %+v (found %v): want the pid, CPU 0 until a second sample", st, ok)
	}
	time.Sleep(700 * time.Millisecond)
	st := s.Sample(pids)["w"]
	if st.CPUPercent < 20 || st.CPUPercent > 110 {
		t.Errorf("CPU %.1f%% of a core for a busy loop", st.CPUPercent)
	}
	p := &process.Process{Pid: int32(pid)}
	mem, err := p.MemoryInfo()
	if err != nil {
		t.Fatal(err)
	}
	if st.RSSBytes == 0 || st.RSSBytes > 2*mem.RSS || 2*st.RSSBytes < mem.RSS {
		t.Errorf("RSS %d, gopsutil says %d", st.RSSBytes, mem.RSS)
	}
	if n, _ := p.NumThreads(); st.Threads != n {
		t.Errorf("threads %d, gopsutil says %d", st.Threads, n)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got := s.Sample(pids); len(got) != 0 {
		t.Errorf("a process that exited is still sampled: %+v", got)
	}
	if len(s.last) != 0 {
		t.Errorf("the sampler still remembers %d gone processes", len(s.last))
	}
}

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
	pids := map[string]int{"self": 1}
	s.Sample(pids)
	n := testing.AllocsPerRun(50, func() { s.Sample(pids) })
	t.Logf("%.0f allocations per sample", n)
	if n > 8 {
		t.Errorf("%.0f allocations per sample of one process", n)
	}
}
