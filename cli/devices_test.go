package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// devicesReport is what `beekeeper devices --json` prints; the names are a contract.
type devicesReport struct {
	Runtime string                `json:"runtime"`
	Backend string                `json:"backend"`
	Devices []llamaruntime.Device `json:"devices"`
}

// devicesJSON runs `beekeeper devices --json ARGS` with extra environment and decodes it.
func devicesJSON(t *testing.T, env []string, args ...string) devicesReport {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t), append([]string{"devices", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("beekeeper devices --json %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	var rep devicesReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("devices --json printed no report: %v\n%s", err, out)
	}
	return rep
}

// TestDevicesJSONListsTheCPU loads the installed CPU runtime in a real process: the CPU
// device is there, with its memory, and the report names the folder and its backend.
func TestDevicesJSONListsTheCPU(t *testing.T) {
	dir := testenv.Runtime(t)
	rep := devicesJSON(t, nil, "--llama-lib", dir)
	if rep.Runtime != dir {
		t.Fatalf("runtime %q, want %q", rep.Runtime, dir)
	}
	if want := llamaruntime.BackendOf(dir); rep.Backend != want {
		t.Fatalf("backend %q, want %q", rep.Backend, want)
	}
	for _, d := range rep.Devices {
		if d.Type == "cpu" && d.Backend == "CPU" && d.TotalBytes > 0 && d.FreeBytes <= d.TotalBytes {
			return
		}
	}
	t.Fatalf("no CPU device with memory in %+v", rep.Devices)
}

// TestDevicesVulkanBackendSeesSoftwareGPU: the Vulkan build with Mesa's llvmpipe and
// GGML_VK_VISIBLE_DEVICES=0 (llama.cpp skips CPU-type Vulkan devices otherwise) lists a
// GPU-type Vulkan device with memory: the path a real GPU takes, on a machine without one.
func TestDevicesVulkanBackendSeesSoftwareGPU(t *testing.T) {
	if _, err := llamaruntime.LocateBackend(llamaruntime.BackendVulkan); err != nil {
		t.Skipf("the Vulkan runtime is not installed (`beekeeper runtime install --backend vulkan`; scripts/setup.sh does it): %v", err)
	}
	if icds, _ := filepath.Glob("/usr/share/vulkan/icd.d/lvp_icd*.json"); len(icds) == 0 {
		t.Skip("no software Vulkan driver: apt-get install mesa-vulkan-drivers libvulkan1 (scripts/setup.sh does it)")
	}
	rep := devicesJSON(t, []string{"GGML_VK_VISIBLE_DEVICES=0"}, "--backend", llamaruntime.BackendVulkan)
	if rep.Backend != llamaruntime.BackendVulkan {
		t.Fatalf("backend %q, want vulkan (runtime %s)", rep.Backend, rep.Runtime)
	}
	for _, d := range rep.Devices {
		if d.GPU() && d.Backend == "Vulkan" && d.TotalBytes > 0 {
			t.Logf("Vulkan device: %+v", d)
			return
		}
	}
	t.Fatalf("no GPU-type Vulkan device in %+v", rep.Devices)
}

// fakeInstall makes a build's cache folder look installed to `runtime list` and `where`:
// the library, and the record a finished install leaves (.beekeeper-installed).
func fakeInstall(t *testing.T, b llamaruntime.Build) {
	t.Helper()
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		llamaruntime.LibraryFile(): "lib",
		".beekeeper-installed":     llamaruntime.NpmScope + "/" + b.Packages[0] + "@" + llamaruntime.NpmVersion + "\n",
	} {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRuntimeListAndWhereByBackend: `runtime list` shows every build, installed or not
// with the command that installs it, and marks the one workers use; `runtime where
// --backend B` finds B's folder, or names its install command.
func TestRuntimeListAndWhereByBackend(t *testing.T) {
	bs := llamaruntime.Builds()
	if len(bs) < 3 {
		t.Skip("this platform has no GPU builds")
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the children inherit it
	for _, v := range []string{llamaruntime.EnvLib, "YZMA_LIB", llamaruntime.EnvBackend} {
		t.Setenv(v, "")
	}
	bs = llamaruntime.Builds() // their folders under the new cache
	def, gpu, missing := bs[0], bs[1], bs[2]
	fakeInstall(t, def)
	fakeInstall(t, gpu)

	line := func(out, backend string) string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.TrimSuffix(f[0], "*") == backend {
				return l
			}
		}
		t.Fatalf("runtime list has no %s line:\n%s", backend, out)
		return ""
	}
	out := run(t, "runtime", "list")
	if l := line(out, def.Backend); !strings.HasPrefix(l, def.Backend+"*") || !strings.Contains(l, "yes") || !strings.Contains(l, def.Dir) {
		t.Fatalf("the default build should be installed and selected: %q", l)
	}
	if l := line(out, gpu.Backend); strings.Contains(l, "*") || !strings.Contains(l, "yes") {
		t.Fatalf("%s should be installed, not selected: %q", gpu.Backend, l)
	}
	if l := line(out, missing.Backend); !strings.Contains(l, "beekeeper runtime install --backend "+missing.Backend) {
		t.Fatalf("%s should show its install command: %q", missing.Backend, l)
	}

	t.Setenv(llamaruntime.EnvBackend, gpu.Backend)
	out = run(t, "runtime", "list")
	if l := line(out, gpu.Backend); !strings.HasPrefix(l, gpu.Backend+"*") || !strings.Contains(out, "$"+llamaruntime.EnvBackend) {
		t.Fatalf("$%s=%s should select it:\n%s", llamaruntime.EnvBackend, gpu.Backend, out)
	}
	t.Setenv(llamaruntime.EnvBackend, "")

	if got := strings.TrimSpace(run(t, "runtime", "where", "--backend", gpu.Backend)); got != gpu.Dir {
		t.Fatalf("runtime where --backend %s = %q, want %q", gpu.Backend, got, gpu.Dir)
	}
	if got := strings.TrimSpace(run(t, "runtime", "where")); got != def.Dir {
		t.Fatalf("runtime where = %q, want %q", got, def.Dir)
	}
	b, err := exec.Command(testenv.Binary(t), "runtime", "where", "--backend", missing.Backend).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "beekeeper runtime install --backend "+missing.Backend) {
		t.Fatalf("where for a build not installed: %v %q, want a failure naming its install command", err, b)
	}
}
