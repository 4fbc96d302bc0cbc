package spawner

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tklauser/go-sysconf"
)

// procReader reads /proc/PID/stat alone, into one reused buffer: CPU times, threads,
// start time and RSS are all in it, so a sample is one small read with no garbage
// (the app samples every worker every second for as long as it runs).
type procReader struct {
	buf      []byte
	tick     time.Duration // one clock tick (USER_HZ)
	pageSize uint64
}

func newProcReader() procReader {
	hz, err := sysconf.Sysconf(sysconf.SC_CLK_TCK)
	if err != nil || hz <= 0 {
		hz = 100 // USER_HZ on every Linux architecture Go supports
	}
	return procReader{buf: make([]byte, 1024), tick: time.Second / time.Duration(hz), pageSize: uint64(os.Getpagesize())}
}

// Fields of /proc/PID/stat, counted from 1 as proc(5) does.
const (
	statUtime      = 14
	statStime      = 15
	statNumThreads = 20
	statStartTime  = 22
	statRSS        = 24
)

func (r *procReader) sample(pid int) (procSample, error) {
	b, err := readProcFile(&r.buf, "/proc/"+strconv.Itoa(pid)+"/stat")
	if err != nil {
		return procSample{}, err
	}
	return parseStat(b, r.tick, r.pageSize)
}

// parseStat reads the fields it needs from a /proc/PID/stat line. The command name
// (field 2) is in parentheses and may hold spaces or parentheses itself: fields are
// counted from the last ')'.
func parseStat(b []byte, tick time.Duration, pageSize uint64) (procSample, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return procSample{}, fmt.Errorf("proc stat: no command name in %q", b)
	}
	var s procSample
	var utime, stime uint64
	field := 3 // the state, right after ") "
	rest := bytes.TrimSpace(b[end+1:])
	for len(rest) > 0 && field <= statRSS {
		tok := rest
		if i := bytes.IndexByte(rest, ' '); i >= 0 {
			tok, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		switch field {
		case statUtime, statStime, statNumThreads, statStartTime, statRSS:
			v, err := strconv.ParseInt(string(tok), 10, 64) // the string does not escape: no garbage
			if err != nil {
				return procSample{}, fmt.Errorf("proc stat: field %d %q: %w", field, tok, err)
			}
			switch field {
			case statUtime:
				utime = uint64(v)
			case statStime:
				stime = uint64(v)
			case statNumThreads:
				s.threads = int32(v)
			case statStartTime:
				s.start = v
			case statRSS:
				s.rss = uint64(max(v, 0)) * pageSize
			}
		}
		field++
	}
	if field <= statRSS {
		return procSample{}, fmt.Errorf("proc stat: %d fields, want %d", field-1, statRSS)
	}
	s.cpu = time.Duration(utime+stime) * tick
	return s, nil
}
