package spawner

import (
	"strings"
	"testing"
)

// The token reaches the worker through its environment only; the hive's own secrets do
// not; the marker that FindWorkers looks for is there.
func TestWorkerEnvironmentHoldsItsTokenAndMarker(t *testing.T) {
	t.Setenv(envQueenToken, "queen-secret")
	t.Setenv(envWorkerKey, "shared-key")
	t.Setenv(EnvAPIToken, "inherited")
	s := &Spawner{cfg: Config{HiveDir: "/state"}}
	spec := Spec{ModelPath: "/m.gguf", WorkerType: "llm", BindHost: "127.0.0.1", Token: "tok"}
	for _, a := range s.args(spec, "worker-llm-8080", 8080) {
		if strings.Contains(a, "tok") {
			t.Fatalf("the token is in the arguments: %q", a)
		}
	}
	env := s.env(spec, "worker-llm-8080")
	got := map[string][]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = append(got[k], v)
	}
	for k, want := range map[string]string{EnvAPIToken: "tok", EnvWorkerID: "worker-llm-8080", EnvHiveState: "/state"} {
		if len(got[k]) != 1 || got[k][0] != want {
			t.Errorf("%s = %v, want [%s]", k, got[k], want)
		}
	}
	for _, k := range []string{envQueenToken, envWorkerKey} {
		if len(got[k]) != 0 {
			t.Errorf("the hive's %s reached the worker: %v", k, got[k])
		}
	}
	spec.Token = ""
	for _, kv := range s.env(spec, "worker-llm-8080") {
		if strings.HasPrefix(kv, EnvAPIToken+"=") {
			t.Errorf("a worker spawned without a token inherits %s", kv)
		}
	}
}
