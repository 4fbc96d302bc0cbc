package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Library is the models folder plus the files the user added from elsewhere (kept in a
// small JSON list). It is safe for concurrent use.
type Library struct {
	dir      string // the models folder; downloads land here
	listFile string // JSON array of added paths

	mu     sync.Mutex
	added  []string
	listAt stamp                 // the list file as last read or written
	cache  map[string]cachedInfo // path -> metadata, valid while size and mtime match
}

// stamp tells a file's versions apart: another Library on the same list (the spawn
// dialog's Browse…, a second window) may have changed it.
type stamp struct {
	size  int64
	mtime time.Time
}

func stampOf(path string) stamp {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{st.Size(), st.ModTime()}
}

type cachedInfo struct {
	size  int64
	mtime time.Time
	info  Info
}

// OpenLibrary uses dir as the models folder (created if missing) and listFile for the
// added files, typically dirs.Models() and filepath.Join(dirs.Data(), "models.json").
func OpenLibrary(dir, listFile string) (*Library, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("models folder: %w", err)
	}
	l := &Library{dir: dir, listFile: listFile, cache: map[string]cachedInfo{}}
	if err := l.readListLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// readListLocked reads the list of added files when it changed since last read.
func (l *Library) readListLocked() error {
	at := stampOf(l.listFile)
	if at == l.listAt && at != (stamp{}) {
		return nil
	}
	if st, err := os.Stat(l.listFile); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("models list %s is %s, not a file: remove it", l.listFile, fileKind(st.Mode()))
	}
	b, err := os.ReadFile(l.listFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.added = nil
	case err != nil:
		return fmt.Errorf("models list: %w", err)
	default:
		var added []string
		if err := json.Unmarshal(b, &added); err != nil {
			// Keep the damaged list for the user and start afresh rather than refuse to open.
			_ = os.Rename(l.listFile, l.listFile+".damaged")
			added = nil
		}
		l.added = added
	}
	l.listAt = at
	return nil
}

// Dir is the models folder.
func (l *Library) Dir() string { return l.dir }

// Add puts a file from anywhere into the library (it stays where it is). It must exist;
// a file that is not GGUF is still added and listed with the reason.
func (l *Library) Add(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("add model: %w", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("add model: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("add model: %s is a folder: choose a .gguf file", abs)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if filepath.Dir(abs) == filepath.Clean(l.dir) {
		return nil // already listed from the models folder
	}
	if err := l.readListLocked(); err != nil {
		return fmt.Errorf("add model: %w", err)
	}
	for _, p := range l.added {
		if p == abs {
			return nil
		}
	}
	l.added = append(l.added, abs)
	return l.saveLocked()
}

func (l *Library) saveLocked() error {
	b, err := json.MarshalIndent(l.added, "", "  ")
	if err != nil {
		return fmt.Errorf("models list: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(l.listFile), 0o755); err != nil {
		return fmt.Errorf("models list: %w", err)
	}
	tmp := l.listFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("models list: %w", err)
	}
	if err := os.Rename(tmp, l.listFile); err != nil {
		return fmt.Errorf("models list: %w", err)
	}
	l.listAt = stampOf(l.listFile)
	return nil
}

// List returns every model in the library, sorted by name, each with its metadata or the
// reason it cannot be read. Partial downloads (.part) are not models and never listed.
func (l *Library) List() []Info {
	paths := map[string]bool{}
	ents, _ := os.ReadDir(l.dir)
	for _, e := range ents {
		if !e.IsDir() && strings.EqualFold(filepath.Ext(e.Name()), ".gguf") {
			paths[filepath.Join(l.dir, e.Name())] = true
		}
	}
	l.mu.Lock()
	_ = l.readListLocked() // an unreadable list keeps the files last read
	for _, p := range l.added {
		paths[p] = true
	}
	l.mu.Unlock()

	out := make([]Info, 0, len(paths))
	for p := range paths {
		out = append(out, l.info(p))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// info returns path's metadata, parsing only when the file changed since last time.
func (l *Library) info(path string) Info {
	st, err := os.Stat(path)
	if err != nil {
		return Info{Path: path, Name: modelName(path), Err: fmt.Errorf("model %s: %w (remove it from the library, or put the file back)", path, err)}
	}
	l.mu.Lock()
	c, ok := l.cache[path]
	l.mu.Unlock()
	if ok && c.size == st.Size() && c.mtime.Equal(st.ModTime()) {
		return c.info
	}
	info, _ := Inspect(path)
	l.mu.Lock()
	l.cache[path] = cachedInfo{size: st.Size(), mtime: st.ModTime(), info: info}
	l.mu.Unlock()
	return info
}

// ErrInUse means a worker is serving the model, so it cannot be deleted.
var ErrInUse = errors.New("model is in use by a running worker")

// Deleted says what Delete did.
type Deleted int

// What Delete did with the file.
const (
	FileDeleted Deleted = iota // the file was in the models folder and is gone
	Forgotten                  // an added file: dropped from the library, the file stays
)

// Delete removes a model. inUse (may be nil) is asked first, so the caller decides what
// "used by a worker" means; a model in use is refused with ErrInUse. A file in the models
// folder is deleted; a file the user added from elsewhere is only dropped from the
// library, because it is the user's, not ours.
func (l *Library) Delete(path string, inUse func(path string) bool) (Deleted, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, fmt.Errorf("delete model: %w", err)
	}
	if inUse != nil && inUse(abs) {
		return 0, fmt.Errorf("delete %s: %w: stop the worker first", filepath.Base(abs), ErrInUse)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.readListLocked(); err != nil {
		return 0, fmt.Errorf("delete model: %w", err)
	}
	delete(l.cache, abs)
	for i, p := range l.added {
		if p == abs {
			l.added = append(l.added[:i], l.added[i+1:]...)
			return Forgotten, l.saveLocked()
		}
	}
	if filepath.Dir(abs) != filepath.Clean(l.dir) {
		return 0, fmt.Errorf("delete %s: not in the library", abs)
	}
	if err := os.Remove(abs); err != nil {
		return 0, fmt.Errorf("delete model: %w", err)
	}
	return FileDeleted, nil
}

func modelName(path string) string { return wire.ModelName(path) }
