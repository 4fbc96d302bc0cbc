package memtrim

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

func released() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Now returns the pages of freed Go memory to the OS at once (the runtime's own
// scavenger would take minutes).
func TestNowReleasesFreedHeap(t *testing.T) {
	var keep [][]byte
	for range 64 {
		keep = append(keep, make([]byte, 1<<20))
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	before := released()
	Now()
	if after := released(); after < before+32<<20 {
		t.Fatalf("released %d MiB more, want ≥ 32 of the 64 freed", (after-before)>>20)
	}
}
