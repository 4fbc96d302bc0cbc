package llamaruntime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hybridgroup/yzma/pkg/llama"
)

var (
	loadOnce sync.Once
	loadDir  string
	loadErr  error
	loaded   atomic.Bool // Devices may be asked from any goroutine
)

// ErrNotLoaded is the error of asking for devices before Load succeeded.
var ErrNotLoaded = errors.New("llama.cpp runtime not loaded: call llamaruntime.Load first")

// Load locates the runtime (see Locate) and loads it into this process, once. The
// returned folder is the one loaded. Errors match ErrMissing when nothing was found.
func Load(explicit string) (string, error) {
	loadOnce.Do(func() {
		dir, err := Locate(explicit)
		if err != nil {
			loadErr = err
			return
		}
		if err := searchDir(dir); err != nil {
			loadErr = fmt.Errorf("load llama.cpp from %s: %w", dir, err)
			return
		}
		if err := llama.Load(dir); err != nil {
			loadErr = fmt.Errorf("load llama.cpp from %s: %w (is it a llama.cpp build that yzma v1.28.0 supports?)", dir, err)
			return
		}
		llama.LogSet(llama.LogSilent())
		llama.Init() // registers the backends in dir: libggml-cpu-*, libggml-vulkan, libggml-cuda
		// node-llama-cpp's CUDA build keeps a libggml-cuda.so for the older CUDA runtime
		// in fallback/ and loads it when the main one found no GPU; so do we.
		if fb := filepath.Join(dir, "fallback"); isDir(fb) && !hasGPU() {
			_ = llama.GGMLBackendLoadAllFromPath(fb)
		}
		loadDir = dir
		loaded.Store(true)
	})
	return loadDir, loadErr
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Device is one device llama.cpp can run on. Type is cpu, gpu, igpu, accel or meta;
// Backend is the registry that owns it (CPU, Vulkan, CUDA, Metal).
type Device struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	Backend     string `json:"backend"`
	FreeBytes   uint64 `json:"free_bytes"`
	TotalBytes  uint64 `json:"total_bytes"`
}

// GPU reports whether the device has its own compute (a discrete or integrated GPU).
func (d Device) GPU() bool { return d.Type == "gpu" || d.Type == "igpu" }

// Devices lists every device the loaded runtime sees, in llama.cpp's order.
func Devices() ([]Device, error) {
	if !loaded.Load() {
		return nil, ErrNotLoaded
	}
	n := llama.GGMLBackendDeviceCount()
	devs := make([]Device, 0, n)
	for i := range n {
		d := llama.GGMLBackendDeviceGet(i)
		free, total := llama.GGMLBackendDeviceMemory(d)
		devs = append(devs, Device{
			Name:        llama.GGMLBackendDeviceName(d),
			Description: llama.GGMLBackendDeviceDescription(d),
			Type:        deviceType(llama.GGMLBackendDevType(d)),
			Backend:     llama.GGMLBackendRegName(llama.GGMLBackendDeviceBackendReg(d)),
			FreeBytes:   free,
			TotalBytes:  total,
		})
	}
	return devs, nil
}

func deviceType(t llama.GGMLBackendDeviceType) string {
	switch t {
	case llama.GGMLBackendDeviceTypeCPU:
		return "cpu"
	case llama.GGMLBackendDeviceTypeGPU:
		return "gpu"
	case llama.GGMLBackendDeviceTypeIGPU:
		return "igpu"
	case llama.GGMLBackendDeviceTypeACCEL:
		return "accel"
	case llama.GGMLBackendDeviceTypeMETA:
		return "meta"
	}
	return fmt.Sprintf("type%d", int32(t))
}

// hasGPU reports whether a loaded backend registered a GPU device.
func hasGPU() bool {
	for i := range llama.GGMLBackendDeviceCount() {
		switch llama.GGMLBackendDevType(llama.GGMLBackendDeviceGet(i)) {
		case llama.GGMLBackendDeviceTypeGPU, llama.GGMLBackendDeviceTypeIGPU:
			return true
		}
	}
	return false
}
