package llamaruntime

import (
	"fmt"
	"sync"

	"github.com/hybridgroup/yzma/pkg/llama"
)

var (
	loadOnce sync.Once
	loadDir  string
	loadErr  error
)

// Load locates the runtime (see Locate) and loads it into this process, once. The
// returned folder is the one loaded. Errors match ErrMissing when nothing was found.
func Load(explicit string) (string, error) {
	loadOnce.Do(func() {
		dir, err := Locate(explicit)
		if err != nil {
			loadErr = err
			return
		}
		if err := llama.Load(dir); err != nil {
			loadErr = fmt.Errorf("load llama.cpp from %s: %w (is it a llama.cpp build that yzma v1.28.0 supports?)", dir, err)
			return
		}
		llama.LogSet(llama.LogSilent())
		llama.Init()
		loadDir = dir
	})
	return loadDir, loadErr
}
