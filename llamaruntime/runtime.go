// Package llamaruntime owns the llama.cpp shared libraries: where they are looked for,
// how they are installed into the cache, and loading them into this process.
package llamaruntime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
)

// EnvLib names a folder holding the llama.cpp shared libraries, for a user's own build
// (CUDA, Metal, Vulkan). YZMA_LIB, yzma's own variable, is honoured too.
const EnvLib = "BEEKEEPER_LLAMA_LIB"

// The prebuilt llama.cpp that yzma v1.28.0 speaks to, from the npm registry.
const (
	NpmScope   = "@node-llama-cpp"
	NpmVersion = "3.21.1"
)

// ErrMissing is matched (errors.Is) by every "runtime not found" error.
var ErrMissing = errors.New("llama.cpp runtime not found")

// MissingError says where the runtime was looked for and how to install it.
type MissingError struct {
	Looked []string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("llama.cpp runtime not found (looked in %s); install it with `beekeeper runtime install` "+
		"(needs npm), or set %s to the folder of your own llama.cpp build's %s",
		strings.Join(e.Looked, ", "), EnvLib, LibraryFile())
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

// platformPackage is the node-llama-cpp package name part for this platform.
func platformPackage() (string, error) {
	switch runtime.GOOS + "/" + runtime.GOARCH {
	case "linux/amd64":
		return "linux-x64", nil
	case "linux/arm64":
		return "linux-arm64", nil
	case "darwin/arm64":
		return "mac-arm64-metal", nil
	case "darwin/amd64":
		return "mac-x64", nil
	case "windows/amd64":
		return "win-x64", nil
	}
	return "", fmt.Errorf("no prebuilt llama.cpp for %s/%s: build llama.cpp yourself and set %s", runtime.GOOS, runtime.GOARCH, EnvLib)
}

// DefaultDir is the cache folder `beekeeper runtime install` fills.
func DefaultDir() string {
	plat, err := platformPackage()
	if err != nil {
		plat = runtime.GOOS + "-" + runtime.GOARCH
	}
	return filepath.Join(dirs.Cache(), "llama.cpp", plat+"-"+NpmVersion)
}

// Locate finds the runtime folder: the explicit folder (a flag or setting) when given,
// else $BEEKEEPER_LLAMA_LIB, else $YZMA_LIB, else the cache folder. An explicit folder
// that lacks the library is an error, not a reason to fall back silently.
func Locate(explicit string) (string, error) {
	var candidates []string
	switch {
	case explicit != "":
		candidates = []string{explicit}
	case os.Getenv(EnvLib) != "":
		candidates = []string{os.Getenv(EnvLib)}
	default:
		if v := os.Getenv("YZMA_LIB"); v != "" {
			candidates = append(candidates, v)
		}
		candidates = append(candidates, DefaultDir())
	}
	for _, dir := range candidates {
		if fi, err := os.Stat(filepath.Join(dir, LibraryFile())); err == nil && !fi.IsDir() {
			return dir, nil
		}
	}
	return "", &MissingError{Looked: candidates}
}
