package spawner

import (
	"slices"
	"testing"
)

// --gpu-layers goes to the worker only when asked for: a worker without the flag
// refuses unknown flags, so the default spawn must not send it.
func TestSpawnArgsPassGPULayersOnlyWhenSet(t *testing.T) {
	s := &Spawner{}
	for _, tc := range []struct{ layers, want string }{{"", ""}, {"auto", "auto"}, {"0", "0"}, {"12", "12"}} {
		a := s.args(Spec{ModelPath: "/m.gguf", WorkerType: "llm", BindHost: "127.0.0.1", GPULayers: tc.layers}, "worker-llm-8080", 8080)
		i := slices.Index(a, "--gpu-layers")
		switch {
		case tc.want == "" && i >= 0:
			t.Errorf("GPULayers %q: args %q pass --gpu-layers", tc.layers, a)
		case tc.want != "" && (i < 0 || i+1 >= len(a) || a[i+1] != tc.want):
			t.Errorf("GPULayers %q: args %q, want --gpu-layers %s", tc.layers, a, tc.want)
		}
	}
}
