package hive

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// TestRestartKeepsGPULayers: the --gpu-layers a worker was spawned with is recorded with
// it, and a restart (the app's Respawn) starts the new worker with the same value.
func TestRestartKeepsGPULayers(t *testing.T) {
	h := openHive(t, t.TempDir(), "")
	t.Cleanup(func() { _ = h.Close(true) }) // its workers must not outlive the test
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := h.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t), GPULayers: "0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.Get(e.ID); got.GPULayers != "0" {
		t.Fatalf("the entry records GPU layers %q, want 0", got.GPULayers)
	}
	again, err := h.Restart(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	head, err := h.LogTail(again.ID, 0)
	if err != nil || len(head) == 0 || !strings.Contains(head[0], "--gpu-layers 0") || again.GPULayers != "0" {
		t.Fatalf("the restarted worker lost --gpu-layers 0: entry %q, log starts %q (err %v)", again.GPULayers, head, err)
	}
}
