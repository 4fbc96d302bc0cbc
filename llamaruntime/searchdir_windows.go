//go:build windows

package llamaruntime

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// searchDir lets Windows find the libraries llama.dll imports (ggml.dll, ggml-base.dll)
// in dir: LoadLibrary looks for a library's imports next to the program, in the system
// folders and on PATH, not next to the library.
func searchDir(dir string) error {
	if err := windows.SetDllDirectory(dir); err != nil {
		return fmt.Errorf("add %s to the library search path: %w", dir, err)
	}
	return nil
}
