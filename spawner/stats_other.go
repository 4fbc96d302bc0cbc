//go:build !linux

package spawner

import (
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// procReader reads a process's figures through gopsutil.
type procReader struct{}

func newProcReader() procReader { return procReader{} }

func (procReader) sample(pid int) (procSample, error) {
	p := &process.Process{Pid: int32(pid)}
	t, err := p.Times()
	if err != nil {
		return procSample{}, err
	}
	start, err := p.CreateTime()
	if err != nil {
		return procSample{}, err
	}
	s := procSample{cpu: time.Duration((t.User + t.System) * float64(time.Second)), start: start}
	if m, err := p.MemoryInfo(); err == nil {
		s.rss = m.RSS
	}
	s.threads, _ = p.NumThreads()
	return s, nil
}
