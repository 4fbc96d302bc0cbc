// Package localregistry owns this machine's record of the workers it spawned: a JSON file
// in the state folder, written atomically under a file lock, with change subscriptions.
package localregistry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// SchemaVersion is the registry file's format version.
const SchemaVersion = 1

// FileName is the registry file inside the state folder.
const FileName = "registry.json"

// ErrNewerSchema means the file was written by a newer Beekeeper; it is left untouched.
var ErrNewerSchema = errors.New("registry file was written by a newer Beekeeper: upgrade this one")

// ErrNotFound is an id the registry does not hold.
var ErrNotFound = errors.New("no such worker in the local registry")

type file struct {
	Schema  int     `json:"schema"`
	Entries []Entry `json:"entries"`
}

// ChangeKind says what happened to an entry.
type ChangeKind string

// Change kinds.
const (
	Added   ChangeKind = "added"
	Updated ChangeKind = "updated"
	Removed ChangeKind = "removed"
)

// Change is one entry's change, delivered to subscribers.
type Change struct {
	Kind  ChangeKind
	Entry Entry
}

// Registry is the local registry. Every change is a transaction: take the file lock,
// re-read the file (so changes by another instance are merged, never overwritten), apply,
// write atomically, release. Safe for concurrent use, and for several processes sharing
// one folder.
type Registry struct {
	path string
	lock string
	log  *slog.Logger

	mu      sync.Mutex // serialises transactions in this process; never held across network I/O
	entries map[string]Entry
	// pubMu is taken before mu is released and held while a transaction's changes are
	// published, so subscribers see changes in commit order (the last event for an id is
	// its current state). Publishing never blocks, so holding it is short.
	pubMu sync.Mutex

	subMu sync.Mutex
	subs  map[chan Change]struct{}

	// seen is the file as last read or written by this instance (under mu), taken from
	// the descriptor that was read or written so that it describes exactly that content.
	seen        fs.FileInfo
	seenMissing bool
	pinned      *os.File // the file seen describes, held open (see)
}

// Open opens (creating if needed) the registry in dir. A corrupt file is moved aside as
// registry.json.corrupt-<time> with a warning and the registry starts empty.
func Open(dir string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state folder: %w", err)
	}
	r := &Registry{
		path:    filepath.Join(dir, FileName),
		lock:    filepath.Join(dir, FileName+".lock"),
		log:     log,
		entries: map[string]Entry{},
		subs:    map[chan Change]struct{}{},
	}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the registry file.
func (r *Registry) Path() string { return r.path }

// List returns every entry sorted by start time, then id.
func (r *Registry) List() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns one entry.
func (r *Registry) Get(id string) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	return e, ok
}

// Reload re-reads the file and notifies subscribers of what another instance changed.
// A file that is still the one this instance last read or wrote is not read again: the
// hive reloads four times a second, and an idle app should cost one stat for that.
func (r *Registry) Reload() error {
	if r.unchanged() {
		return nil
	}
	return r.Update(func(map[string]Entry) error { return nil })
}

// see records f, just read or written (nil: the file is missing), as the file last seen,
// and keeps it open. An open file's inode is not handed to a new file, so a later file
// reusing the inode number (filesystems do at once) is never taken for it. Caller holds mu.
func (r *Registry) see(f *os.File) {
	r.forgetSeen()
	if f == nil {
		r.seenMissing = true
		return
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return
	}
	r.pinned, r.seen = f, info
}

// forgetSeen drops what see recorded: the next Reload reads the file. Caller holds mu.
func (r *Registry) forgetSeen() {
	if r.pinned != nil {
		r.pinned.Close()
	}
	r.pinned, r.seen, r.seenMissing = nil, nil, false
}

// unchanged reports whether the file is the very one last read or written here: same
// inode (writes replace the file by rename, so another instance's write is a new inode),
// same size and modification time (an edit in place changes those).
func (r *Registry) unchanged() bool {
	cur, err := os.Stat(r.path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, fs.ErrNotExist) {
		return r.seenMissing
	}
	return err == nil && r.seen != nil && os.SameFile(r.seen, cur) &&
		r.seen.Size() == cur.Size() && r.seen.ModTime().Equal(cur.ModTime())
}

// Put inserts or replaces an entry.
func (r *Registry) Put(e Entry) error {
	return r.Update(func(m map[string]Entry) error {
		m[e.ID] = e
		return nil
	})
}

// Modify applies fn to one entry and returns the result; ErrNotFound when absent.
func (r *Registry) Modify(id string, fn func(*Entry)) (Entry, error) {
	var out Entry
	err := r.Update(func(m map[string]Entry) error {
		e, ok := m[id]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		fn(&e)
		m[id] = e
		out = e
		return nil
	})
	return out, err
}

// Delete forgets an entry; ErrNotFound when absent.
func (r *Registry) Delete(id string) error {
	return r.Update(func(m map[string]Entry) error {
		if _, ok := m[id]; !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		delete(m, id)
		return nil
	})
}

// Update runs fn on the freshly read entries under the file lock and persists the result
// when fn changed anything. An error from fn leaves the file unchanged.
func (r *Registry) Update(fn func(map[string]Entry) error) error {
	r.mu.Lock()
	changes, err := r.update(fn)
	r.pubMu.Lock()
	r.mu.Unlock()
	defer r.pubMu.Unlock()
	if err != nil {
		return err
	}
	r.publish(changes)
	return nil
}

func (r *Registry) update(fn func(map[string]Entry) error) ([]Change, error) {
	unlock, err := lockFile(r.lock, lockWait)
	if err != nil {
		return nil, err
	}
	defer unlock()

	current, err := r.read()
	if err != nil {
		return nil, err
	}
	next := make(map[string]Entry, len(current))
	for k, v := range current {
		next[k] = v
	}
	if err := fn(next); err != nil {
		return nil, err
	}
	if !sameEntries(current, next) {
		if err := r.write(next); err != nil {
			return nil, err
		}
	}
	changes := diff(r.entries, next)
	r.entries = next
	return changes, nil
}

// read loads the file; a missing file is empty, a corrupt one is moved aside.
func (r *Registry) read() (map[string]Entry, error) {
	out := map[string]Entry{}
	f0, err := os.Open(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		r.see(nil)
		return out, nil
	}
	if err != nil {
		r.forgetSeen()
		return nil, fmt.Errorf("read registry: %w", err)
	}
	b, err := io.ReadAll(f0)
	if err != nil {
		f0.Close()
		r.forgetSeen()
		return nil, fmt.Errorf("read registry: %w", err)
	}
	r.see(f0)
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&f); err != nil || f.Schema == 0 {
		if err == nil {
			err = errors.New("no schema version")
		}
		return out, r.moveAside(err)
	}
	if f.Schema > SchemaVersion {
		return nil, fmt.Errorf("%w (%s has schema %d, this build reads %d)", ErrNewerSchema, r.path, f.Schema, SchemaVersion)
	}
	for _, e := range f.Entries {
		if e.ID == "" {
			continue
		}
		out[e.ID] = e
	}
	return out, nil
}

func (r *Registry) moveAside(cause error) error {
	aside := fmt.Sprintf("%s.corrupt-%s", r.path, time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(r.path, aside); err != nil {
		return fmt.Errorf("registry %s is corrupt (%v) and could not be moved aside: %w", r.path, cause, err)
	}
	r.log.Warn("local registry was corrupt; moved it aside and started empty",
		"file", r.path, "moved_to", aside, "cause", cause)
	return nil
}

// write persists entries atomically: temp file, fsync, rename, fsync of the folder.
func (r *Registry) write(m map[string]Entry) error {
	f := file{Schema: SchemaVersion, Entries: make([]Entry, 0, len(m))}
	for _, e := range m {
		f.Entries = append(f.Entries, e)
	}
	sort.Slice(f.Entries, func(i, j int) bool { return f.Entries[i].ID < f.Entries[j].ID })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry: %w", err)
	}
	dir := filepath.Dir(r.path)
	tmp, err := os.CreateTemp(dir, FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("write registry: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write registry: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync registry: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.path); err != nil {
		tmp.Close()
		r.forgetSeen()
		return fmt.Errorf("replace registry: %w", err)
	}
	r.see(tmp) // the rename keeps inode, size and mtime
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort where folders cannot sync
		d.Close()
	}
	return nil
}

func diff(old, next map[string]Entry) []Change {
	var out []Change
	for id, e := range next {
		prev, ok := old[id]
		switch {
		case !ok:
			out = append(out, Change{Added, e})
		case !sameEntry(prev, e):
			out = append(out, Change{Updated, e})
		}
	}
	for id, e := range old {
		if _, ok := next[id]; !ok {
			out = append(out, Change{Removed, e})
		}
	}
	return out
}

// Subscribe delivers every change. The channel is buffered; a subscriber that falls more
// than its buffer behind misses changes (never blocks the registry) and should List.
func (r *Registry) Subscribe() (<-chan Change, func()) {
	ch := make(chan Change, 256)
	r.subMu.Lock()
	r.subs[ch] = struct{}{}
	r.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			r.subMu.Lock()
			delete(r.subs, ch)
			close(ch)
			r.subMu.Unlock()
		})
	}
}

func (r *Registry) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	r.subMu.Lock()
	defer r.subMu.Unlock()
	for ch := range r.subs {
		for _, c := range changes {
			select {
			case ch <- c:
			default:
			}
		}
	}
}

// sameEntry compares by encoding: times read back from the file lose their monotonic
// reading and location pointer, which reflect.DeepEqual would count as a change.
func sameEntry(a, b Entry) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func sameEntries(a, b map[string]Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for id, e := range a {
		f, ok := b[id]
		if !ok || !sameEntry(e, f) {
			return false
		}
	}
	return true
}
