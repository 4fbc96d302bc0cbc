//go:build linux

package spawner

import (
	"bytes"
	"strconv"
	"strings"
)

// markerReader finds the worker id in a process's environment when it carries hiveDir's
// marker. /proc is read directly, into one buffer: this runs over every process of the
// machine every few seconds.
type markerReader struct {
	hiveDir string
	needle  []byte
	buf     []byte
}

func newMarkerReader(hiveDir string) *markerReader {
	return &markerReader{hiveDir: hiveDir, needle: []byte(EnvHiveState + "=" + hiveDir + "\x00"), buf: make([]byte, 8<<10)}
}

func (r *markerReader) worker(pid int32) (string, bool) {
	b, err := readProcFile(&r.buf, "/proc/"+strconv.Itoa(int(pid))+"/environ")
	if err != nil || !bytes.Contains(b, r.needle) {
		return "", false
	}
	env := strings.Split(string(b), "\x00")
	if v, _ := markerValue(env, EnvHiveState); v != r.hiveDir {
		return "", false // the bytes matched inside another variable's value
	}
	id, ok := markerValue(env, EnvWorkerID)
	return id, ok && id != ""
}
