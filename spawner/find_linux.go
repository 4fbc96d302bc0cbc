//go:build linux

package spawner

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// markedWorker reports the worker id of pid when its environment carries hiveDir's
// marker. /proc is read directly: this runs over every process of the machine.
func markedWorker(pid int32, hiveDir string) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil || !bytes.Contains(b, []byte(EnvHiveState+"="+hiveDir+"\x00")) {
		return "", false
	}
	env := strings.Split(string(b), "\x00")
	if v, _ := markerValue(env, EnvHiveState); v != hiveDir {
		return "", false // the bytes matched inside another variable's value
	}
	id, ok := markerValue(env, EnvWorkerID)
	return id, ok && id != ""
}
