// Package llamaruntime owns the llama.cpp shared libraries: which prebuilt backends there
// are, where they are looked for, installing them into the cache, and loading them.
package llamaruntime

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
)

// EnvLib names a folder holding the llama.cpp shared libraries, for a user's own build.
// YZMA_LIB, yzma's own variable, is honoured too.
const EnvLib = "BEEKEEPER_LLAMA_LIB"

// EnvBackend names the installed backend to use (cpu, vulkan, cuda) when no folder is
// given; a folder ($BEEKEEPER_LLAMA_LIB, $YZMA_LIB, a flag) wins over it.
const EnvBackend = "BEEKEEPER_BACKEND"

// The prebuilt llama.cpp that yzma v1.28.0 speaks to, from the npm registry.
const (
	NpmScope   = "@node-llama-cpp"
	NpmVersion = "3.21.1"
)

// Backend names. Custom is a folder that is not one of the prebuilt builds.
const (
	BackendCPU    = "cpu"
	BackendVulkan = "vulkan"
	BackendCUDA   = "cuda"
	BackendMetal  = "metal"
	BackendCustom = "custom"
)

// Build is one prebuilt llama.cpp the npm registry offers for this platform.
type Build struct {
	Backend string
	// Packages are the npm package names (without the scope): the first holds the
	// libraries; the others extend it (CUDA's -ext holds a build for the older CUDA runtime).
	Packages []string
	Dir      string // its cache folder
}

// Installed reports whether the build's cache folder holds a finished install.
func (b Build) Installed() bool { return Installed(b.Dir) }

// Platforms are the npm package prefixes of node-llama-cpp's prebuilt llama.cpp, by the
// GOOS/GOARCH they run on. `beekeeper runtime install --platform` takes these names.
var platforms = map[string]string{
	"linux-x64":   "linux/amd64",
	"linux-arm64": "linux/arm64",
	"mac-arm64":   "darwin/arm64",
	"mac-x64":     "darwin/amd64",
	"win-x64":     "windows/amd64",
}

// ErrUnknownPlatform is matched by the error of a platform name with no prebuilt builds.
var ErrUnknownPlatform = errors.New("unknown llama.cpp platform")

// Platform is this machine's platform name (linux-x64, win-x64, mac-arm64, ...); ""
// where the npm registry has no llama.cpp for it.
func Platform() string { return platformOf(runtime.GOOS + "/" + runtime.GOARCH) }

func platformOf(osArch string) string {
	for name, oa := range platforms {
		if oa == osArch {
			return name
		}
	}
	return ""
}

// PlatformBuilds lists the prebuilt builds of a platform ("" = this machine's), the
// default first: for installing another machine's runtime (a Windows build for Wine, a
// folder to copy to a Mac).
func PlatformBuilds(platform string) ([]Build, error) {
	if platform == "" {
		return Builds(), nil
	}
	osArch, ok := platforms[platform]
	if !ok {
		return nil, fmt.Errorf("%w %q: there are %s", ErrUnknownPlatform, platform, strings.Join(platformNames(), ", "))
	}
	goos, goarch, _ := strings.Cut(osArch, "/")
	return builds(goos, goarch), nil
}

// platformNames lists the platform names, sorted.
func platformNames() []string {
	names := make([]string, 0, len(platforms))
	for name := range platforms {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// builds lists the prebuilt builds per platform, the default first. Every build's
// packages start with the platform's name (win-x64-vulkan is win-x64's Vulkan build).
func builds(goos, goarch string) []Build {
	var bs []Build
	switch goos + "/" + goarch {
	case "linux/amd64":
		bs = []Build{
			{Backend: BackendCPU, Packages: []string{"linux-x64"}},
			{Backend: BackendVulkan, Packages: []string{"linux-x64-vulkan"}},
			{Backend: BackendCUDA, Packages: []string{"linux-x64-cuda", "linux-x64-cuda-ext"}},
		}
	case "linux/arm64":
		bs = []Build{{Backend: BackendCPU, Packages: []string{"linux-arm64"}}}
	case "darwin/arm64":
		// Metal is the default on Apple silicon: workers offload every layer (GPU
		// layers auto) to the GPU that shares the CPU's memory.
		bs = []Build{{Backend: BackendMetal, Packages: []string{"mac-arm64-metal"}}}
	case "darwin/amd64":
		bs = []Build{{Backend: BackendCPU, Packages: []string{"mac-x64"}}}
	case "windows/amd64":
		bs = []Build{
			{Backend: BackendCPU, Packages: []string{"win-x64"}},
			{Backend: BackendVulkan, Packages: []string{"win-x64-vulkan"}},
			{Backend: BackendCUDA, Packages: []string{"win-x64-cuda", "win-x64-cuda-ext"}},
		}
	}
	for i := range bs {
		bs[i].Dir = filepath.Join(dirs.Cache(), "llama.cpp", bs[i].Packages[0]+"-"+NpmVersion)
	}
	return bs
}

// Builds lists the prebuilt builds for this platform, the default first; none where the
// npm registry has no llama.cpp for it.
func Builds() []Build { return builds(runtime.GOOS, runtime.GOARCH) }

// DefaultBackend is the build `beekeeper runtime install` takes without --backend: the
// CPU build, or Metal on Apple silicon.
func DefaultBackend() string {
	if bs := Builds(); len(bs) > 0 {
		return bs[0].Backend
	}
	return BackendCPU
}

// ErrUnknownBackend is matched by the error of a backend name this platform has no build for.
var ErrUnknownBackend = errors.New("unknown llama.cpp backend")

// BuildFor returns the build of a backend ("" = the default), or an error naming the
// backends there are.
func BuildFor(backend string) (Build, error) {
	return buildIn(Builds(), backend, runtime.GOOS+"/"+runtime.GOARCH)
}

// buildIn picks a backend's build ("" = the default) out of one platform's builds.
func buildIn(bs []Build, backend, platform string) (Build, error) {
	if len(bs) == 0 {
		return Build{}, fmt.Errorf("%w: no prebuilt llama.cpp for %s: build llama.cpp yourself and set %s",
			ErrUnknownBackend, platform, EnvLib)
	}
	if backend == "" {
		return bs[0], nil
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		if b.Backend == backend {
			return b, nil
		}
		names[i] = b.Backend
	}
	return Build{}, fmt.Errorf("%w %q: %s has %s", ErrUnknownBackend, backend, platform, strings.Join(names, ", "))
}

// DefaultDir is the cache folder of the default build.
func DefaultDir() string {
	if b, err := BuildFor(""); err == nil {
		return b.Dir
	}
	return filepath.Join(dirs.Cache(), "llama.cpp", runtime.GOOS+"-"+runtime.GOARCH+"-"+NpmVersion)
}

// BackendOf names the backend of a runtime folder: the build its install record names,
// else the build whose cache folder it is, else BackendCustom (a user's own build).
func BackendOf(dir string) string { return backendIn(Builds(), dir) }

// backendIn is BackendOf among one platform's builds.
func backendIn(bs []Build, dir string) string {
	if pkg := installedPackage(dir); pkg != "" {
		for _, b := range bs {
			if b.Packages[0] == pkg {
				return b.Backend
			}
		}
	}
	for _, b := range bs {
		if filepath.Clean(dir) == b.Dir {
			return b.Backend
		}
	}
	return BackendCustom
}

// installedPackage is the first npm package (no scope, no version) dir's install record
// names; "" without one.
func installedPackage(dir string) string {
	f, err := os.Open(filepath.Join(dir, markerFile))
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	pkg := strings.TrimPrefix(strings.TrimSpace(line), NpmScope+"/")
	pkg, _, _ = strings.Cut(pkg, "@")
	return pkg
}

// knownPackage reports whether pkg holds the libraries of a build of some platform.
func knownPackage(pkg string) bool {
	for _, osArch := range platforms {
		goos, goarch, _ := strings.Cut(osArch, "/")
		for _, b := range builds(goos, goarch) {
			if b.Packages[0] == pkg {
				return true
			}
		}
	}
	return false
}

// buildAt returns the build whose cache folder dir is.
func buildAt(dir string) (Build, bool) {
	for _, b := range Builds() {
		if filepath.Clean(dir) == b.Dir {
			return b, true
		}
	}
	return Build{}, false
}

// ErrMissing is matched (errors.Is) by every "runtime not found" error.
var ErrMissing = errors.New("llama.cpp runtime not found")

// MissingError says where the runtime was looked for and how to install it.
type MissingError struct {
	Looked  []string
	Backend string // the build that was asked for; "" = the default
}

func (e *MissingError) Error() string {
	install := "beekeeper runtime install"
	if e.Backend != "" && e.Backend != DefaultBackend() {
		install += " --backend " + e.Backend
	}
	return fmt.Sprintf("llama.cpp runtime not found (looked in %s); install it with `%s` "+
		"(needs npm), or set %s to the folder of your own llama.cpp build's %s",
		strings.Join(e.Looked, ", "), install, EnvLib, LibraryFile())
}

// Is makes errors.Is(err, ErrMissing) hold.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// LibraryFile is the llama library's file name on this platform.
func LibraryFile() string {
	switch runtime.GOOS {
	case "windows":
		return "llama.dll"
	case "darwin":
		return "libllama.dylib"
	default:
		return "libllama.so"
	}
}

// Locate finds the runtime folder: the explicit folder (a flag or setting) when given,
// else $BEEKEEPER_LLAMA_LIB, else $YZMA_LIB, else the install of the backend
// $BEEKEEPER_BACKEND names, else the default (CPU) install. An explicit folder or a named
// backend that lacks the library is an error, not a reason to fall back silently.
func Locate(explicit string) (string, error) {
	dir, _, err := locate(explicit, "")
	return dir, err
}

// LocateBackend is Locate with a backend named by the caller (a flag, a setting) in
// place of $BEEKEEPER_BACKEND; "" leaves the choice to $BEEKEEPER_BACKEND. The folder
// variables still win: they name a user's own build.
func LocateBackend(backend string) (string, error) {
	dir, _, err := locate("", backend)
	return dir, err
}

// SelectedBy says what picks the folder Locate("") returns: "$BEEKEEPER_LLAMA_LIB",
// "$YZMA_LIB", "$BEEKEEPER_BACKEND=vulkan" or "the default".
func SelectedBy() string {
	_, by, _ := locate("", "")
	return by
}

// locate is Locate and LocateBackend, and what chose the folder.
func locate(explicit, backend string) (dir, by string, err error) {
	switch {
	case explicit != "":
		b, _ := buildAt(explicit)
		return check(explicit, "the folder given", b.Backend)
	case os.Getenv(EnvLib) != "":
		return check(os.Getenv(EnvLib), "$"+EnvLib, "")
	case os.Getenv("YZMA_LIB") != "" && hasLibrary(os.Getenv("YZMA_LIB")):
		return os.Getenv("YZMA_LIB"), "$YZMA_LIB", nil // unlike ours, a stale one falls through
	}
	by = "backend " + backend
	if backend == "" {
		by = "the default"
		if backend = os.Getenv(EnvBackend); backend != "" {
			by = "$" + EnvBackend + "=" + backend
		}
	}
	b, err := BuildFor(backend)
	if err != nil {
		return "", by, fmt.Errorf("%s: %w", by, err)
	}
	dir, by, err = check(b.Dir, by, b.Backend)
	var missing *MissingError
	if v := os.Getenv("YZMA_LIB"); v != "" && errors.As(err, &missing) {
		missing.Looked = append([]string{v}, missing.Looked...)
	}
	return dir, by, err
}

// check returns dir when it holds the library, else a MissingError naming the fix.
func check(dir, by, backend string) (string, string, error) {
	if !hasLibrary(dir) {
		return "", by, &MissingError{Looked: []string{dir}, Backend: backend}
	}
	return dir, by, nil
}

func hasLibrary(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, LibraryFile()))
	return err == nil && !fi.IsDir()
}
