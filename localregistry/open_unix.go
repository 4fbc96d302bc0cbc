//go:build !windows

package localregistry

import "os"

// pinSeen keeps the file last read or written open (see Registry.see): an open file's
// inode is never handed to a new file.
const pinSeen = true

// openShared opens the registry file for reading (see the Windows version).
func openShared(path string) (*os.File, error) { return os.Open(path) }

// createTemp creates the next registry file beside it (see the Windows version).
func createTemp(dir, pattern string) (*os.File, error) { return os.CreateTemp(dir, pattern) }

// renameFile replaces newpath by oldpath atomically.
func renameFile(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
