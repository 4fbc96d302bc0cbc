package llamaruntime

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fakeInstall makes b's cache folder look installed: the library and the install record.
func fakeInstall(t *testing.T, b Build) {
	t.Helper()
	touch(t, filepath.Join(b.Dir, LibraryFile()))
	if err := os.WriteFile(filepath.Join(b.Dir, markerFile), []byte(NpmScope+"/"+b.Packages[0]+"@"+NpmVersion+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gpuBuild is a build of this platform other than the default, for the precedence tests.
func gpuBuild(t *testing.T) Build {
	t.Helper()
	bs := Builds()
	if len(bs) < 2 {
		t.Skipf("%s/%s has only one prebuilt llama.cpp build", runtime.GOOS, runtime.GOARCH)
	}
	return bs[1]
}

// cleanEnv gives the test its own cache and no runtime variables.
func cleanEnv(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, v := range []string{EnvLib, "YZMA_LIB", EnvBackend} {
		t.Setenv(v, "")
	}
}

// TestLocateBackendPrecedence: explicit folder > $BEEKEEPER_LLAMA_LIB > $YZMA_LIB > a
// backend named ($BEEKEEPER_BACKEND or LocateBackend) > the default install; a named
// backend that is not installed is an error naming its install command, never a silent
// fall back to the CPU build.
func TestLocateBackendPrecedence(t *testing.T) {
	cleanEnv(t)
	gpu := gpuBuild(t)
	def, _ := BuildFor("")
	fakeInstall(t, def)

	if dir, err := LocateBackend(""); err != nil || dir != def.Dir {
		t.Fatalf("nothing named: %q %v, want the default %s", dir, err, def.Dir)
	}
	_, err := LocateBackend(gpu.Backend)
	var missing *MissingError
	if !errors.As(err, &missing) || missing.Backend != gpu.Backend || !strings.Contains(err.Error(), "beekeeper runtime install --backend "+gpu.Backend) {
		t.Fatalf("a named backend not installed: %v, want a MissingError naming `--backend %s`", err, gpu.Backend)
	}
	t.Setenv(EnvBackend, gpu.Backend)
	if _, err := Locate(""); !errors.Is(err, ErrMissing) {
		t.Fatalf("$%s naming a backend not installed: %v, want ErrMissing", EnvBackend, err)
	}

	fakeInstall(t, gpu)
	if dir, err := Locate(""); err != nil || dir != gpu.Dir || SelectedBy() != "$"+EnvBackend+"="+gpu.Backend {
		t.Fatalf("$%s=%s: %q %v (by %s)", EnvBackend, gpu.Backend, dir, err, SelectedBy())
	}
	if dir, _ := LocateBackend(def.Backend); dir != def.Dir {
		t.Fatalf("LocateBackend(%s) beats $%s: got %q", def.Backend, EnvBackend, dir)
	}
	t.Setenv(EnvBackend, "")
	if dir, _ := LocateBackend(gpu.Backend); dir != gpu.Dir {
		t.Fatalf("LocateBackend(%s): got %q", gpu.Backend, dir)
	}

	yzma := t.TempDir()
	touch(t, filepath.Join(yzma, LibraryFile()))
	t.Setenv("YZMA_LIB", yzma)
	if dir, _ := LocateBackend(gpu.Backend); dir != yzma || SelectedBy() != "$YZMA_LIB" {
		t.Fatalf("$YZMA_LIB comes before a named backend: got %q", dir)
	}
	own := t.TempDir()
	touch(t, filepath.Join(own, LibraryFile()))
	t.Setenv(EnvLib, own)
	if dir, _ := LocateBackend(gpu.Backend); dir != own {
		t.Fatalf("$%s comes before $YZMA_LIB: got %q", EnvLib, dir)
	}
	if dir, _ := Locate(def.Dir); dir != def.Dir {
		t.Fatalf("an explicit folder comes first: got %q", dir)
	}

	t.Setenv(EnvLib, "")
	t.Setenv("YZMA_LIB", "")
	if _, err := LocateBackend("rocm"); !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), gpu.Backend) {
		t.Fatalf("an unknown backend: %v, want ErrUnknownBackend listing the ones there are", err)
	}
}

// TestBackendOfFolder: a folder is named by its install record, then by which cache
// folder it is; anything else is a user's own build.
func TestBackendOfFolder(t *testing.T) {
	cleanEnv(t)
	gpu := gpuBuild(t)
	fakeInstall(t, gpu)
	if got := BackendOf(gpu.Dir); got != gpu.Backend {
		t.Fatalf("BackendOf(%s) = %q, want %q", gpu.Dir, got, gpu.Backend)
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(gpu.Dir, moved); err != nil {
		t.Fatal(err)
	}
	if got := BackendOf(moved); got != gpu.Backend {
		t.Fatalf("a moved install keeps its backend: got %q", got)
	}
	def, _ := BuildFor("")
	if got := BackendOf(def.Dir); got != def.Backend {
		t.Fatalf("the default cache folder, not installed: %q", got)
	}
	if got := BackendOf(t.TempDir()); got != BackendCustom {
		t.Fatalf("a user's folder: %q, want %q", got, BackendCustom)
	}
	// A record naming another build is no install of this one.
	if _, err := InstallBackend(t.Context(), "", moved, func(string, ...any) {}); !errors.Is(err, ErrFolderInUse) {
		t.Fatalf("installing the default build over a %s install: %v, want ErrFolderInUse", gpu.Backend, err)
	}
}

// fakeRoot is a machine's file tree for the probe: files maps a path to its content.
func fakeRoot(t *testing.T, files ...string) Probe {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		touch(t, filepath.Join(root, f))
	}
	return Probe{Root: root, GOOS: "linux", GOARCH: "amd64", LibDirs: libDirs}
}

func TestSuggestBackendFromDrivers(t *testing.T) {
	const (
		nvidiaProc = "/proc/driver/nvidia/version"
		libcuda    = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
		cudart13   = "/usr/local/cuda/lib64/libcudart.so.13"
		libvulkan  = "/usr/lib/x86_64-linux-gnu/libvulkan.so.1"
		nvidiaICD  = "/usr/share/vulkan/icd.d/nvidia_icd.json"
		radeonICD  = "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json"
		lavapipe   = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
		renderNode = "/dev/dri/renderD128"
	)
	cases := []struct {
		name   string
		files  []string
		want   string
		reason string
	}{
		{"bare machine", nil, BackendCPU, "no GPU driver"},
		{"NVIDIA with the CUDA runtime", []string{nvidiaProc, libcuda, cudart13, libvulkan, nvidiaICD}, BackendCUDA, "libcudart.so.13"},
		{"NVIDIA libcuda only, no proc", []string{libcuda, cudart13}, BackendCUDA, "NVIDIA"},
		{"NVIDIA without CUDA runtime uses its Vulkan", []string{nvidiaProc, libvulkan, nvidiaICD}, BackendVulkan, "nvidia_icd.json"},
		{"NVIDIA alone still wants CUDA", []string{nvidiaProc}, BackendCUDA, "CUDA 12 or 13 runtime"},
		{"AMD GPU with Mesa", []string{libvulkan, radeonICD, renderNode}, BackendVulkan, "renderD128"},
		{"ICD in /etc", []string{libvulkan, "/etc/vulkan/icd.d/intel_icd.x86_64.json", renderNode}, BackendVulkan, "Vulkan"},
		{"Mesa installed, no GPU", []string{libvulkan, radeonICD, lavapipe}, BackendCPU, "no GPU driver"},
		{"only lavapipe", []string{libvulkan, lavapipe, renderNode}, BackendCPU, "no GPU driver"},
		{"ICD without the loader", []string{radeonICD, renderNode}, BackendCPU, "no GPU driver"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeRoot(t, tc.files...).Suggest()
			if s.Backend != tc.want || !strings.Contains(s.Reason, tc.reason) {
				t.Fatalf("Suggest() = %+v, want %s with %q in the reason", s, tc.want, tc.reason)
			}
		})
	}

	t.Run("the linker cache finds libraries", func(t *testing.T) {
		p := fakeRoot(t, radeonICD, renderNode)
		p.Ldconfig = func() []byte {
			return []byte("3 libs found in cache `/etc/ld.so.cache'\n" +
				"\tlibvulkan.so.1 (libc6,x86-64) => /opt/vk/libvulkan.so.1\n")
		}
		if s := p.Suggest(); s.Backend != BackendVulkan {
			t.Fatalf("Suggest() = %+v, want vulkan from ldconfig -p", s)
		}
	})
	t.Run("Apple silicon", func(t *testing.T) {
		p := fakeRoot(t)
		p.GOOS, p.GOARCH = "darwin", "arm64"
		if s := p.Suggest(); s.Backend != BackendMetal {
			t.Fatalf("Suggest() = %+v, want metal", s)
		}
	})
	t.Run("no build for the platform", func(t *testing.T) {
		p := fakeRoot(t, nvidiaProc, cudart13)
		p.GOARCH = "riscv64"
		if s := p.Suggest(); s.Backend != BackendCPU {
			t.Fatalf("Suggest() = %+v, want cpu", s)
		}
	})
}

// TestInstallVulkanBackendFromNpm is the one real install: the Vulkan build from the npm
// registry into a temp folder, loadable by name (libllama.so links to
// libllama.vulkan.vX.so), recorded as vulkan, and not fetched twice.
func TestInstallVulkanBackendFromNpm(t *testing.T) {
	if _, err := BuildFor(BackendVulkan); err != nil {
		t.Skipf("no Vulkan build here: %v", err)
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed (apt-get install npm): the real install needs it")
	}
	dir := filepath.Join(t.TempDir(), "vulkan")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := InstallBackend(ctx, BackendVulkan, dir, t.Logf); err != nil {
		t.Fatal(err)
	}
	t.Logf("vulkan install took %s", time.Since(start).Round(time.Millisecond))
	for _, f := range []string{LibraryFile(), "libggml.so", "libggml-base.so", "libggml-vulkan.so"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the vulkan install lacks %s: %v", f, err)
		}
	}
	if got := BackendOf(dir); got != BackendVulkan {
		t.Fatalf("BackendOf = %q, want vulkan", got)
	}
	t.Setenv("PATH", "") // a second install must not reach for npm
	var said []string
	if _, err := InstallBackend(ctx, BackendVulkan, dir, func(f string, a ...any) { said = append(said, f) }); err != nil ||
		len(said) != 1 || !strings.Contains(said[0], "already installed") {
		t.Fatalf("second install: %v %q", err, said)
	}
}
