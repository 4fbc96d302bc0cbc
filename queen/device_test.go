package queen

import (
	"testing"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestHeartbeatCarriesDeviceAndKVCache: what a worker computes on and how full its KV
// cache is reach the Queen's worker list with its heartbeats.
func TestHeartbeatCarriesDeviceAndKVCache(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", 9)); a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	hb := wire.Heartbeat{WorkerID: "w1", Status: wire.StatusReady, ActiveRequests: 1, QueuedRequests: 2, Slots: 4,
		KVCacheTokens: 300, KVCacheCapacity: 8192, Device: "Vulkan0 (llvmpipe)", Runtime: "vulkan", DeviceFreeBytes: 1 << 30}
	if a := do(t, "POST", srv.URL+wire.PathHeartbeat, "", hb); a.status != 200 {
		t.Fatalf("heartbeat: %d %s", a.status, a.body)
	}
	list := decode[wire.WorkerList](t, do(t, "GET", srv.URL+wire.PathWorkers, "", nil))
	if len(list.Workers) != 1 {
		t.Fatalf("workers %+v", list)
	}
	w := list.Workers[0]
	if w.Device != hb.Device || w.Runtime != "vulkan" || w.DeviceFreeBytes != 1<<30 || w.Slots != 4 ||
		w.KVCacheTokens != 300 || w.KVCacheCapacity != 8192 || w.ActiveRequests != 3 {
		t.Fatalf("worker record %+v", w)
	}
	if got, _ := q.Worker("w1"); got.Device != hb.Device {
		t.Fatalf("Worker(w1) device %q", got.Device)
	}
}
