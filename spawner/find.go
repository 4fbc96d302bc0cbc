package spawner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/process"
)

// Found is a running worker started by a hive on some state folder: its id and process
// from its environment marker, the rest from its command line (which holds no token).
type Found struct {
	ID         string
	PID        int
	CreateTime int64 // ms since the epoch, as CreateTime reports it
	// Spec is the start as its command line gives it: ModelPath, WorkerType, Port,
	// BindHost, AdvertiseHost, SpawnedBy, QueenURL, SpawnOrder, CtxSize, Threads,
	// GPULayers.
	Spec Spec
}

// FindWorkers lists the running workers that carry the marker of the hive on hiveDir
// (EnvHiveState, EnvWorkerID): those a registry may have lost (a spawn killed before it
// recorded its worker, a registry file set aside as corrupt). It reads each process's
// environment (/proc/PID/environ on Linux), so it sees this user's processes only.
func FindWorkers(hiveDir string) ([]Found, error) {
	abs, err := filepath.Abs(hiveDir)
	if err != nil {
		return nil, fmt.Errorf("find workers: %w", err)
	}
	pids, err := process.Pids()
	if err != nil {
		return nil, fmt.Errorf("find workers: list processes: %w", err)
	}
	self := int32(os.Getpid())
	markers := newMarkerReader(abs)
	var out []Found
	for _, pid := range pids {
		if pid == self {
			continue
		}
		id, ok := markers.worker(pid)
		if !ok {
			continue
		}
		p, err := process.NewProcess(pid)
		if err != nil {
			continue
		}
		ct, err := p.CreateTime()
		if err != nil || !Alive(int(pid), ct) {
			continue // gone, or a zombie
		}
		args, err := p.CmdlineSlice()
		if err != nil {
			continue
		}
		spec, ok := specFromArgs(args)
		if !ok {
			continue
		}
		out = append(out, Found{ID: id, PID: int(pid), CreateTime: ct, Spec: spec})
	}
	return out, nil
}

// markerValue returns the value of key in a process environment (KEY=VALUE entries).
func markerValue(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// specFromArgs reads back the command line args() wrote: `worker --flag value ...`.
func specFromArgs(args []string) (Spec, bool) {
	if len(args) < 2 || args[1] != "worker" {
		return Spec{}, false
	}
	v := map[string]string{}
	for i := 2; i+1 < len(args); i += 2 {
		v[strings.TrimLeft(args[i], "-")] = args[i+1]
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(v[k]); return n }
	spec := Spec{
		ModelPath: v["model"], WorkerType: v["worker-type"],
		Port: atoi("port"), BindHost: v["host"], AdvertiseHost: v["advertise-host"],
		SpawnedBy: v["spawned-by"], QueenURL: v["queen-url"], SpawnOrder: v["spawn-order"],
		CtxSize: atoi("ctx-size"), Threads: atoi("threads"), GPULayers: v["gpu-layers"],
	}
	return spec, spec.Port > 0
}
