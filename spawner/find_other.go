//go:build !linux

package spawner

import "github.com/shirou/gopsutil/v4/process"

// markerReader finds the worker id in a process's environment when it carries hiveDir's
// marker.
type markerReader struct{ hiveDir string }

func newMarkerReader(hiveDir string) *markerReader { return &markerReader{hiveDir: hiveDir} }

func (r *markerReader) worker(pid int32) (string, bool) {
	p, err := process.NewProcess(pid)
	if err != nil {
		return "", false
	}
	env, err := p.Environ()
	if err != nil {
		return "", false
	}
	if v, _ := markerValue(env, EnvHiveState); v != r.hiveDir {
		return "", false
	}
	id, ok := markerValue(env, EnvWorkerID)
	return id, ok && id != ""
}
