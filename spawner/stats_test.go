//go:build unix

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
