package spawner

import (
	"errors"
	"io"
	"os"
)

// readProcFile reads a /proc file whole into buf, growing it as needed, and returns the
// bytes read. /proc files report no size, so os.ReadFile would allocate afresh on every
// call; these reads repeat for as long as the app runs.
func readProcFile(buf *[]byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := *buf
	n := 0
	for {
		if n == len(b) {
			b = append(b, make([]byte, max(len(b), 512))...)
			*buf = b
		}
		m, err := f.Read(b[n:])
		n += m
		if errors.Is(err, io.EOF) || m == 0 && err == nil {
			return b[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}
