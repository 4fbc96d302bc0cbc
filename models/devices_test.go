package models

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

const devicesFixture = `{"runtime":"/home/u/.cache/beekeeper/llama.cpp/linux-x64-vulkan-3.21.1","backend":"vulkan",
 "devices":[
  {"name":"Vulkan0","description":"NVIDIA GeForce RTX 3060","type":"gpu","backend":"Vulkan","free_bytes":8053063680,"total_bytes":12884901888},
  {"name":"Vulkan1","description":"AMD Radeon Graphics (RADV RENOIR)","type":"igpu","backend":"Vulkan","free_bytes":1073741824,"total_bytes":2147483648},
  {"name":"BLAS","description":"OpenBLAS","type":"accel","backend":"BLAS","free_bytes":0,"total_bytes":0},
  {"name":"CPU","description":"AMD Ryzen 7 5800H","type":"cpu","backend":"CPU","free_bytes":17179869184,"total_bytes":34359738368}]}`

func TestParseDevices(t *testing.T) {
	devs, err := ParseDevices([]byte(devicesFixture))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 4 {
		t.Fatalf("%d devices, want 4: %+v", len(devs), devs)
	}
	want := Device{Name: "Vulkan0", Description: "NVIDIA GeForce RTX 3060", Type: "gpu", Backend: "Vulkan",
		FreeBytes: 8053063680, TotalBytes: 12884901888}
	if devs[0] != want {
		t.Fatalf("first device %+v, want %+v", devs[0], want)
	}
	var offload []string
	for _, d := range devs {
		if d.Offloads() {
			offload = append(offload, d.Name)
		}
	}
	if strings.Join(offload, ",") != "Vulkan0,Vulkan1" {
		t.Fatalf("offload devices %q, want the two GPUs", offload)
	}

	// A library's chatter on stdout before the report is skipped.
	if devs, err := ParseDevices([]byte("ggml_vulkan: Found 1 Vulkan devices:\n" + devicesFixture + "\n")); err != nil || len(devs) != 4 {
		t.Fatalf("with chatter first: %d devices, %v", len(devs), err)
	}
	// A CPU-only runtime lists the CPU alone, or nothing: both are fine.
	if devs, err := ParseDevices([]byte(`{"runtime":"x","backend":"cpu","devices":[]}`)); err != nil || len(devs) != 0 {
		t.Fatalf("empty list: %v, %v", devs, err)
	}
	for name, bad := range map[string]string{
		"not JSON":        "unknown command: devices",
		"no devices list": `{"runtime":"x","backend":"cpu"}`,
		"nameless device": `{"devices":[{"type":"gpu"}]}`,
		"wrong types":     `{"devices":[{"name":"x","free_bytes":"lots"}]}`,
	} {
		if _, err := ParseDevices([]byte(bad)); err == nil {
			t.Errorf("%s: parsed %q", name, bad)
		}
	}
}

// fakeBeekeeper writes a shell script that stands in for `beekeeper devices --json`.
func fakeBeekeeper(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "beekeeper")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeDevicesRunsTheBinary(t *testing.T) {
	ctx := context.Background()
	ok := fakeBeekeeper(t, `[ "$1 $2" = "devices --json" ] || exit 2
cat <<'EOF'
`+devicesFixture+`
EOF`)
	devs, err := ProbeDevices(ctx, ok, "")
	if err != nil || len(devs) != 4 {
		t.Fatalf("%d devices, %v", len(devs), err)
	}

	old := fakeBeekeeper(t, `echo 'beekeeper: unknown command "devices"' >&2; exit 2`)
	if _, err := ProbeDevices(ctx, old, ""); err == nil || !strings.Contains(err.Error(), `unknown command "devices"`) {
		t.Fatalf("an old binary: %v, want its complaint", err)
	}

	hung := fakeBeekeeper(t, `exec sleep 30`)
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := ProbeDevices(tctx, hung, ""); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a hung binary: %v after %v", err, time.Since(start))
	}
}

// The real command, when the built binary has it (another change adds it).
func TestProbeDevicesOfTheRealBinary(t *testing.T) {
	bin := os.Getenv(testenv.EnvBinary)
	if bin == "" {
		bin = filepath.Join(testenv.RepoRoot(t), "bin", "beekeeper")
	}
	if err := exec.Command(bin, "devices", "--json").Run(); err != nil {
		t.Skipf("%s devices --json: %v (not built, or the command is not there yet)", bin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devs, err := ProbeDevices(ctx, bin, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("devices: %+v", devs)
}
