package spawner

import "time"

// Sampler samples CPU, RSS and threads of a set of processes. The caller owns the ticker
// (one for all workers); a Sampler is not safe for concurrent use.
type Sampler struct {
	read procReader
	last map[int]procSample // the previous sample of each pid, for CPU %
}

// procSample is what one read of a process gives.
type procSample struct {
	cpu     time.Duration // user + system time so far
	start   int64         // when the process started, in the OS's units: a reused pid differs
	rss     uint64
	threads int32
	at      time.Time
}

// NewSampler returns an empty Sampler.
func NewSampler() *Sampler { return &Sampler{read: newProcReader(), last: map[int]procSample{}} }

// Sample takes one sample of each pid (id -> pid); processes that are gone are left out
// and forgotten. CPU % is since the previous sample of the same process (0 on the first).
func (s *Sampler) Sample(pids map[string]int) map[string]Stats {
	now := time.Now()
	out := make(map[string]Stats, len(pids))
	seen := make(map[int]bool, len(pids))
	for id, pid := range pids {
		cur, err := s.read.sample(pid)
		if err != nil {
			continue
		}
		cur.at = now
		seen[pid] = true
		st := Stats{PID: pid, RSSBytes: cur.rss, Threads: cur.threads, SampledAt: now}
		if prev, ok := s.last[pid]; ok && prev.start == cur.start && cur.at.After(prev.at) {
			st.CPUPercent = max(0, float64(cur.cpu-prev.cpu)/float64(cur.at.Sub(prev.at))*100)
		}
		s.last[pid] = cur
		out[id] = st
	}
	for pid := range s.last {
		if !seen[pid] {
			delete(s.last, pid)
		}
	}
	return out
}
