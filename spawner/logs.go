package spawner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// tailWindow bounds how much of a log file a tail reads.
const tailWindow = 64 << 10

// Tail returns up to n last lines of a log file.
func Tail(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open worker log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat worker log: %w", err)
	}
	off := st.Size() - tailWindow
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read worker log: %w", err)
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil, nil
	}
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

func lastLines(path string, n int) []string {
	l, _ := Tail(path, n)
	return l
}

// TrimLog bounds a log file that a worker appends to: past max bytes, it keeps the last
// half. The worker's O_APPEND descriptor then writes at the new end.
func TrimLog(path string, max int64) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= max {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("trim worker log: %w", err)
	}
	defer f.Close()
	keep := make([]byte, max/2)
	n, err := f.ReadAt(keep, st.Size()-int64(len(keep)))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("trim worker log: %w", err)
	}
	keep = keep[:n]
	if i := bytes.IndexByte(keep, '\n'); i >= 0 {
		keep = keep[i+1:]
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("trim worker log: %w", err)
	}
	_, err = f.WriteAt(append([]byte("=== log trimmed ===\n"), keep...), 0)
	return err
}

// Follow copies the log file to w from its current end (or from offset 0 when fromStart),
// polling for growth until ctx ends. A trimmed file restarts from its beginning.
func Follow(ctx context.Context, path string, w io.Writer, fromStart bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open worker log: %w", err)
	}
	defer f.Close()
	var off int64
	if !fromStart {
		if off, err = f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	}
	buf := make([]byte, 32<<10)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				off += int64(n)
			}
			if err != nil {
				break
			}
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
