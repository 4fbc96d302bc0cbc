package llamaruntime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/hybridgroup/yzma/pkg/mtmd"
	"github.com/hybridgroup/yzma/pkg/utils"
)

// VisionFile is the file name of llama.cpp's multimodal library (mtmd), which reads
// images for a model's projector (mmproj). The npm builds ship none: `beekeeper runtime
// install --vision` compiles it from the same release's source (see InstallVision).
func VisionFile() string {
	switch runtime.GOOS {
	case "windows":
		return "mtmd.dll"
	case "darwin":
		return "libmtmd.dylib"
	default:
		return "libmtmd.so"
	}
}

// HasVision reports whether the runtime folder dir holds the multimodal library.
func HasVision(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, VisionFile()))
	return err == nil && fi.Mode().IsRegular()
}

// VisionMissingError says a runtime folder has no multimodal library, and how to get
// one. It matches ErrMissing: a worker asked for images exits as for a missing runtime.
type VisionMissingError struct {
	Dir string
}

func (e *VisionMissingError) Error() string {
	install := "beekeeper runtime install --vision"
	if b := BackendOf(e.Dir); b != BackendCustom && b != DefaultBackend() {
		install += " --backend " + b
	}
	return fmt.Sprintf("the llama.cpp multimodal library %s is not in %s: build it with `%s` "+
		"(needs npm, git and a C++ compiler: apt-get install g++ git npm), or put your own llama.cpp build's %s there",
		VisionFile(), e.Dir, install, VisionFile())
}

// Is makes errors.Is(err, ErrMissing) hold.
func (e *VisionMissingError) Is(target error) bool { return target == ErrMissing }

var (
	visionMu     sync.Mutex
	visionLoaded string // the folder loaded from; "" = not yet
)

// LoadVision loads the multimodal library of the runtime folder dir (the one Load
// returned) into this process, once; its log goes where llama.cpp's does (nowhere).
// Errors match ErrMissing when the folder has none.
func LoadVision(dir string) error {
	visionMu.Lock()
	defer visionMu.Unlock()
	switch {
	case visionLoaded == dir:
		return nil
	case visionLoaded != "":
		return fmt.Errorf("the multimodal library is already loaded from %s, not %s", visionLoaded, dir)
	case !HasVision(dir):
		return &VisionMissingError{Dir: dir}
	}
	if err := mtmd.Load(dir); err != nil {
		return fmt.Errorf("load %s from %s: %w (is it built from the same llama.cpp as the runtime?)", VisionFile(), dir, err)
	}
	mtmd.LogSet(purego.NewCallback(recordVisionError))
	visionLoaded = dir
	return nil
}

// ggmlLogError is ggml_log_level's GGML_LOG_LEVEL_ERROR.
const ggmlLogError = 4

// visionErrors keeps mtmd's last error lines (it logs why it refused a projector,
// and returns only NULL), for VisionErrors; everything else it logs is dropped.
var visionErrors struct {
	sync.Mutex
	lines []string
}

// recordVisionError is mtmd's log callback: ggml_log_callback(level, text, user_data).
func recordVisionError(level int32, text *byte, _ unsafe.Pointer) {
	if level != ggmlLogError || text == nil {
		return
	}
	line := strings.TrimSpace(utils.BytePtrToString(text))
	visionErrors.Lock()
	defer visionErrors.Unlock()
	visionErrors.lines = append(visionErrors.lines, line)
	if n := len(visionErrors.lines); n > 8 {
		visionErrors.lines = visionErrors.lines[n-8:]
	}
}

// VisionErrors returns, and forgets, the error lines mtmd logged since the last call,
// joined by "; ".
func VisionErrors() string {
	visionErrors.Lock()
	defer visionErrors.Unlock()
	s := strings.Join(visionErrors.lines, "; ")
	visionErrors.lines = nil
	return strings.ReplaceAll(s, "\n", " ")
}

// ErrVisionUnsupported is matched by the error of building the multimodal library on a
// platform the build does not cover.
var ErrVisionUnsupported = errors.New("building the multimodal library is not supported here")
