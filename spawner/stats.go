package spawner

import (
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// Sampler samples CPU, RSS and threads of a set of processes. The caller owns the ticker
// (one for all workers); a Sampler is not safe for concurrent use.
type Sampler struct {
	procs map[int]*process.Process
}

// NewSampler returns an empty Sampler.
func NewSampler() *Sampler { return &Sampler{procs: map[int]*process.Process{}} }

// Sample takes one sample of each pid (id -> pid); processes that are gone are left out
// and forgotten. CPU % is since the previous sample of the same pid (0 on the first).
func (s *Sampler) Sample(pids map[string]int) map[string]Stats {
	now := time.Now()
	out := make(map[string]Stats, len(pids))
	seen := map[int]bool{}
	for id, pid := range pids {
		seen[pid] = true
		p, ok := s.procs[pid]
		if !ok {
			var err error
			if p, err = process.NewProcess(int32(pid)); err != nil {
				continue
			}
			s.procs[pid] = p
		}
		cpu, err := p.Percent(0)
		if err != nil {
			delete(s.procs, pid)
			continue
		}
		st := Stats{PID: pid, CPUPercent: cpu, SampledAt: now}
		if m, err := p.MemoryInfo(); err == nil {
			st.RSSBytes = m.RSS
		}
		st.Threads, _ = p.NumThreads()
		out[id] = st
	}
	for pid := range s.procs {
		if !seen[pid] {
			delete(s.procs, pid)
		}
	}
	return out
}
