package llamaruntime

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Suggestion is the backend a machine's drivers call for, and what was found.
type Suggestion struct {
	Backend string // one of this platform's builds
	Reason  string // what the machine has, a noun phrase: "an NVIDIA driver and libcudart.so.13"
}

// Probe looks for GPU drivers by their files alone: nothing is loaded or initialised.
type Probe struct {
	Root         string   // prefix of every path read: "/" here, a fake tree in tests
	GOOS, GOARCH string   // the platform whose builds are considered
	LibDirs      []string // folders searched for shared libraries, under Root
	// Ldconfig returns `ldconfig -p`'s listing of the linker cache; nil skips it.
	Ldconfig func() []byte
}

// libDirs are the usual shared library folders of Linux distributions.
var libDirs = []string{
	"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib",
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
	"/usr/lib/wsl/lib", // WSL's libcuda.so.1
}

// HostProbe probes this machine: its files, $LD_LIBRARY_PATH and the linker cache.
func HostProbe() Probe {
	dirs := append([]string(nil), libDirs...)
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if filepath.IsAbs(d) {
			dirs = append(dirs, d)
		}
	}
	return Probe{Root: "/", GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, LibDirs: dirs, Ldconfig: ldconfigCache}
}

// Suggest is HostProbe().Suggest().
func Suggest() Suggestion { return HostProbe().Suggest() }

// Suggest picks the build that offloads to this machine's GPU: CUDA for an NVIDIA driver
// with the CUDA runtime, Vulkan for a Vulkan loader with a GPU driver, Metal on Apple
// silicon, else the default build.
func (p Probe) Suggest() Suggestion {
	bs := builds(p.GOOS, p.GOARCH)
	if len(bs) == 0 {
		return Suggestion{Backend: BackendCPU, Reason: "no prebuilt llama.cpp for " + p.GOOS + "/" + p.GOARCH}
	}
	offers := func(backend string) bool {
		for _, b := range bs {
			if b.Backend == backend {
				return true
			}
		}
		return false
	}
	if offers(BackendMetal) {
		return Suggestion{Backend: BackendMetal, Reason: "Apple silicon (Metal)"}
	}
	if p.GOOS != "linux" {
		return Suggestion{Backend: bs[0].Backend, Reason: "no GPU probe for " + p.GOOS + " (install a GPU build by name)"}
	}

	nvidia := p.exists("/proc/driver/nvidia/version") || p.findLib("libcuda.so.1") != ""
	cudart := p.findLib("libcudart.so.13")
	if cudart == "" {
		cudart = p.findLib("libcudart.so.12") // the CUDA build's fallback/
	}
	vulkan := p.vulkanGPU(nvidia)

	switch {
	case nvidia && cudart != "" && offers(BackendCUDA):
		return Suggestion{Backend: BackendCUDA, Reason: "an NVIDIA driver and the CUDA runtime (" + cudart + ")"}
	case nvidia && vulkan != "" && offers(BackendVulkan):
		return Suggestion{Backend: BackendVulkan, Reason: "an NVIDIA driver with Vulkan (" + vulkan + ") but no CUDA runtime (libcudart.so.12/13)"}
	case nvidia && offers(BackendCUDA):
		return Suggestion{Backend: BackendCUDA, Reason: "an NVIDIA driver (the CUDA build also needs the CUDA 12 or 13 runtime: libcudart, libcublas)"}
	case vulkan != "" && offers(BackendVulkan):
		return Suggestion{Backend: BackendVulkan, Reason: "a GPU (" + vulkan + ") with a Vulkan loader and driver"}
	}
	return Suggestion{Backend: bs[0].Backend, Reason: "no GPU driver that a prebuilt build uses (no NVIDIA driver, no Vulkan GPU driver)"}
}

// vulkanGPU names what shows a GPU that Vulkan drives, or "": the Vulkan loader and a
// hardware driver's ICD file must be there, and a GPU. Mesa installs an ICD for every
// vendor whatever the hardware, and lavapipe (lvp_icd) is a CPU renderer, so for Mesa a
// GPU render node (/dev/dri/renderD*) is the proof; NVIDIA's driver brings its own ICD.
func (p Probe) vulkanGPU(nvidia bool) string {
	if p.findLib("libvulkan.so.1") == "" {
		return ""
	}
	var icds []string
	for _, d := range []string{"/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"} {
		files, _ := filepath.Glob(filepath.Join(p.path(d), "*.json"))
		for _, f := range files {
			if name := filepath.Base(f); !strings.HasPrefix(name, "lvp_icd") {
				icds = append(icds, name)
			}
		}
	}
	if nvidia {
		for _, name := range icds {
			if strings.HasPrefix(name, "nvidia") {
				return name
			}
		}
		return ""
	}
	nodes, _ := filepath.Glob(p.path("/dev/dri/renderD*"))
	if len(icds) == 0 || len(nodes) == 0 {
		return ""
	}
	return "/dev/dri/" + filepath.Base(nodes[0])
}

func (p Probe) path(abs string) string { return filepath.Join(p.Root, abs) }

func (p Probe) exists(abs string) bool {
	_, err := os.Stat(p.path(abs))
	return err == nil
}

// findLib returns where the shared library name is, or "".
func (p Probe) findLib(name string) string {
	for _, d := range p.LibDirs {
		if f := filepath.Join(d, name); p.exists(f) {
			return f
		}
	}
	if p.Ldconfig == nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(p.Ldconfig()))
	for sc.Scan() {
		// "\tlibvulkan.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libvulkan.so.1"
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == name {
			_, target, _ := strings.Cut(sc.Text(), "=> ")
			return strings.TrimSpace(target)
		}
	}
	return ""
}

// ldconfigCache is `ldconfig -p`, or nothing where there is no ldconfig.
func ldconfigCache() []byte {
	bin, err := exec.LookPath("ldconfig")
	if err != nil {
		bin = "/sbin/ldconfig" // not on a user's PATH on Debian
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-p").Output()
	return out
}
