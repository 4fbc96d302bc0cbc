//go:build windows

package localregistry

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/windows"
)

// Windows refuses to rename a file over one that is open, and over or away from one
// open without FILE_SHARE_DELETE (which os.Open leaves out), while other processes read
// the registry as this one replaces it. So the registry's files are opened here with
// FILE_SHARE_DELETE, the file last seen is not kept open, and a rename that meets a
// reader's handle is retried.

// pinSeen is false: a file kept open would block every later write's rename. NTFS file
// ids carry a sequence number, so a new file is not taken for the old one anyway.
const pinSeen = false

// renameFile replaces newpath by oldpath, retrying for up to a second while another
// process holds newpath open for a moment (a read, an antivirus scan), as the Go
// command's robustio does.
func renameFile(oldpath, newpath string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := os.Rename(oldpath, newpath)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func transient(err error) bool {
	return errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_SHARING_VIOLATION)
}

// openShared opens path for reading, letting others replace or rename it meanwhile.
func openShared(path string) (*os.File, error) {
	return open(path, windows.GENERIC_READ, windows.OPEN_EXISTING)
}

// createTemp creates a new file in dir, named by pattern with its "*" replaced by a
// random string, open for writing and as openShared lets others use it.
func createTemp(dir, pattern string) (*os.File, error) {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for range 100 {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		f, err := open(filepath.Join(dir, prefix+hex.EncodeToString(b)+suffix),
			windows.GENERIC_READ|windows.GENERIC_WRITE, windows.CREATE_NEW)
		if !errors.Is(err, os.ErrExist) {
			return f, err
		}
	}
	return nil, &os.PathError{Op: "createtemp", Path: filepath.Join(dir, pattern), Err: os.ErrExist}
}

func open(path string, access, disposition uint32) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, access,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE,
		nil, disposition, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}
