// Package workerkey owns a worker process's secret identity key: making one, checking
// one, and the owner-only file through which a worker hands its key to the hive that
// spawned it, so the hive's registrations of that worker can prove its identity too.
package workerkey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
)

// Bounds of a key's length: 16 characters of base64 hold 96 bits.
const (
	MinLen = 16
	MaxLen = 128
)

// New makes a key: 256 random bits from crypto/rand, as 52 base32 characters.
func New() string { return rand.Text() + rand.Text() }

// Valid reports whether key is MinLen..MaxLen characters of [A-Za-z0-9._~-] (base64url
// and then some, so a spawner may make keys its own way).
func Valid(key string) bool {
	if len(key) < MinLen || len(key) > MaxLen {
		return false
	}
	for _, c := range []byte(key) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

// Dir is where key files live: <state>/worker-keys, owner-only.
func Dir() string { return filepath.Join(dirs.State(), "worker-keys") }

// Path is the key file of the worker with this id on this port. The port is part of the
// name: only one process holds a port, so a file is never another live worker's.
func Path(id string, port int) string {
	return filepath.Join(Dir(), id+"."+strconv.Itoa(port)+".key")
}

// Write stores key for the worker (mode 0600 in a 0700 folder, written whole by a
// rename) with this process's id on its second line, and returns the file's path. It
// also removes the files of workers that are gone (killed, so they could not remove
// their own), so the folder holds about as many files as workers run.
func Write(id string, port int, key string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) {
		return "", fmt.Errorf("worker key file: %q is not a worker id", id)
	}
	dir := Dir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("worker key file: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("worker key file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return "", fmt.Errorf("worker key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("worker key file: %w", err)
	}
	if _, err := tmp.WriteString(key + "\n" + strconv.Itoa(os.Getpid()) + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("worker key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("worker key file: %w", err)
	}
	path := Path(id, port)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("worker key file: %w", err)
	}
	pruneGone(dir, path)
	return path, nil
}

// pruneGone removes the key files in dir, but keep, whose process has exited.
func pruneGone(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if path == keep || !strings.HasSuffix(e.Name(), ".key") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		_, pidLine, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(pidLine)); err == nil && pid > 0 && processGone(pid) {
			_ = os.Remove(path)
		}
	}
}

// Read returns the key of the worker with this id on this port and the id of the
// process that wrote it (0 when the file names none); "" and no error when there is no
// file (a worker of an older version, or one started by another user). The file may be
// a killed worker's, or already its successor's on the same port: callers match the pid.
func Read(id string, port int) (key string, pid int, err error) {
	b, err := os.ReadFile(Path(id, port))
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("worker key file: %w", err)
	}
	key, pidLine, _ := strings.Cut(string(b), "\n")
	key = strings.TrimSpace(key)
	if !Valid(key) {
		return "", 0, fmt.Errorf("worker key file %s holds no valid key", Path(id, port))
	}
	if n, err := strconv.Atoi(strings.TrimSpace(pidLine)); err == nil && n > 0 {
		pid = n
	}
	return key, pid, nil
}

// Remove deletes the worker's key file as it stops, unless the file is no longer this
// process's: once the port is free, a successor with the same id may have written its
// own already. A missing file is fine.
func Remove(id string, port int) {
	if _, pid, err := Read(id, port); err == nil && pid != 0 && pid != os.Getpid() {
		return
	}
	_ = os.Remove(Path(id, port))
}
