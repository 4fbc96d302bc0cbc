package engine

import (
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
)

func TestDefaultThreads(t *testing.T) {
	cores := llama.Threads()
	cases := []struct {
		name       string
		modelBytes uint64
		slots      int
		want       int32
	}{
		{"tiny model: one thread", 1 << 20, 1, 1},
		{"tiny model, many slots: still one each", 1 << 20, 4, 1},
		{"large model: every core", 4 << 30, 1, cores},
		{"large model, slots share the cores", 4 << 30, 2, max(1, cores/2)},
		{"more slots than cores: at least one", 4 << 30, 64, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultThreads(tc.modelBytes, tc.slots); got != tc.want {
				t.Fatalf("defaultThreads(%d, %d) = %d, want %d", tc.modelBytes, tc.slots, got, tc.want)
			}
		})
	}
}
