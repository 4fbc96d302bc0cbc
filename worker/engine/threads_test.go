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
		want       int32
	}{
		{"tiny model: one thread", 1 << 20, 1},
		{"large model: every core, whatever --parallel is", 4 << 30, cores},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := defaultThreads(tc.modelBytes); got != tc.want {
				t.Fatalf("defaultThreads(%d) = %d, want %d", tc.modelBytes, got, tc.want)
			}
		})
	}
}
