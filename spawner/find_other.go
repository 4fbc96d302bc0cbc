//go:build !linux

package spawner

import "github.com/shirou/gopsutil/v4/process"

// markedWorker reports the worker id of pid when its environment carries hiveDir's
// marker.
func markedWorker(pid int32, hiveDir string) (string, bool) {
	p, err := process.NewProcess(pid)
	if err != nil {
		return "", false
	}
	env, err := p.Environ()
	if err != nil {
		return "", false
	}
	if v, _ := markerValue(env, EnvHiveState); v != hiveDir {
		return "", false
	}
	id, ok := markerValue(env, EnvWorkerID)
	return id, ok && id != ""
}
