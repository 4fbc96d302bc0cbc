// Package localregistry owns this machine's record of the workers it spawned: a JSON file
// in the state folder, written atomically under a file lock, with change subscriptions.
// Every state change goes through one check against the table of allowed transitions.
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

	"github.com/beekeeper-hive/beekeeper/internal/broadcast"
)

// SchemaVersion is the registry file's format version.
const SchemaVersion = 1

// FileName is the registry file inside the state folder.
const FileName = "registry.json"

// ErrNewerSchema means the file was written by a newer Beekeeper; it is left untouched.
var ErrNewerSchema = errors.New("registry file was written by a newer Beekeeper: upgrade this one")

// ErrNotFound is an id the registry does not hold.
var ErrNotFound = errors.New("no such worker in the local registry")

// ErrReplaced means the entry now records another process than the one the caller meant
// (a new spawn under the same id): the change was not made.
var ErrReplaced = errors.New("the worker's entry now records another process")

// ErrBadTransition is a state change the transition table forbids (see CanTransition);
// the transaction was not made.
var ErrBadTransition = errors.New("state change not allowed")

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

// Options configure a Registry.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// Rebuild, when set, returns the entries of the workers that still run, from the
	// processes themselves. When a corrupt file is set aside, the registry starts from
	// them (in the same transaction) instead of empty, so no live worker is forgotten.
	// It runs under the registry's lock: it must not call the Registry.
	Rebuild func() []Entry
}

// Registry is the local registry. Every change is a transaction: take the file lock,
// re-read the file (so changes by another instance are merged, never overwritten), apply,
// write atomically, release. Safe for concurrent use, and for several processes sharing
// one folder.
type Registry struct {
	path    string
	lock    string
	log     *slog.Logger
	rebuild func() []Entry

	mu      sync.Mutex // serialises transactions in this process; never held across network I/O
	entries map[string]Entry
	// pubMu is taken before mu is released and held while a transaction's changes are
	// published, so subscribers see changes in commit order (the last event for an id is
	// its current state). Publishing never blocks, so holding it is short.
	pubMu sync.Mutex
	hub   broadcast.Hub[Change]

	// seen is the file as last read or written by this instance (under mu), taken from
	// the descriptor that was read or written so that it describes exactly that content.
	seen        fs.FileInfo
	seenMissing bool
	pinned      *os.File // the file seen describes, held open (see)
}

// Open opens (creating if needed) the registry in dir. A corrupt file is moved aside as
// registry.json.corrupt-<time> with a warning and the registry starts empty (see
// OpenWith for starting from the running workers instead).
func Open(dir string, log *slog.Logger) (*Registry, error) {
	return OpenWith(dir, Options{Logger: log})
}

// OpenWith is Open with options: with Options.Rebuild, a corrupt file is replaced by the
// entries of the workers still running rather than by nothing.
func OpenWith(dir string, o Options) (*Registry, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state folder: %w", err)
	}
	r := &Registry{
		path:    filepath.Join(dir, FileName),
		lock:    filepath.Join(dir, FileName+".lock"),
		log:     o.Logger,
		rebuild: o.Rebuild,
		entries: map[string]Entry{},
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
	if !pinSeen {
		f.Close()
		f = nil
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

// Put inserts or replaces an entry (as a change of state, subject to the transition table).
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

// Transition changes the entry of worker id whose process is pid (0: a claim not started
// yet) in one transaction: fn edits it, State included. The change is not made, and the
// error returned, when the entry is gone (ErrNotFound), records another process
// (ErrReplaced), fn fails, or the new state is not one the table allows from the current
// one (ErrBadTransition). This pid check is the one every lifecycle write goes through.
func (r *Registry) Transition(id string, pid int, fn func(*Entry) error) (Entry, error) {
	var out Entry
	err := r.Update(func(m map[string]Entry) error {
		e, ok := m[id]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if e.PID != pid {
			return fmt.Errorf("%w: %s is pid %d, not %d", ErrReplaced, id, e.PID, pid)
		}
		if err := fn(&e); err != nil {
			return err
		}
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
// when fn changed anything. An error from fn, a state change the transition table
// forbids (ErrBadTransition) or a failed write leaves the file, the entries this
// Registry reports and its subscribers unchanged, and is returned: nothing is reported
// changed that was not persisted.
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

	current, setAside, err := r.read()
	if err != nil {
		return nil, err
	}
	next := make(map[string]Entry, len(current))
	for k, v := range current {
		next[k] = v
	}
	if setAside && r.rebuild != nil {
		for _, e := range r.rebuild() {
			next[e.ID] = e
		}
		r.log.Warn("local registry rebuilt from the workers still running", "file", r.path, "workers", len(next))
	}
	if err := fn(next); err != nil {
		return nil, err
	}
	if err := checkTransitions(current, next); err != nil {
		return nil, err
	}
	if !sameEntries(current, next) {
		if err := r.write(next); err != nil {
			return nil, fmt.Errorf("%w (nothing was changed: free disk space or fix permissions in %s, then retry)", err, filepath.Dir(r.path))
		}
	}
	changes := diff(r.entries, next)
	r.entries = next
	return changes, nil
}

// checkTransitions is the one check of every state change, whoever makes it: an entry
// of the same process (SameProcess) may only move as the transition table allows, and a
// new entry (or a new process under an existing id) must begin as a start.
func checkTransitions(current, next map[string]Entry) error {
	for id, n := range next {
		from := State("")
		if c, ok := current[id]; ok && c.SameProcess(n) {
			from = c.State
		}
		if !CanTransition(from, n.State) {
			if from == "" {
				from = "(new)"
			}
			return fmt.Errorf("%w: %s from %s to %q", ErrBadTransition, id, from, n.State)
		}
	}
	return nil
}

// read loads the file; a missing file is empty, a corrupt one is moved aside (setAside).
func (r *Registry) read() (entries map[string]Entry, setAside bool, err error) {
	out := map[string]Entry{}
	f0, err := openShared(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		r.see(nil)
		return out, false, nil
	}
	if err != nil {
		r.forgetSeen()
		return nil, false, fmt.Errorf("read registry: %w", err)
	}
	b, err := io.ReadAll(f0)
	if err != nil {
		f0.Close()
		r.forgetSeen()
		return nil, false, fmt.Errorf("read registry: %w", err)
	}
	r.see(f0)
	f, err := decode(b)
	if err != nil {
		return out, true, r.moveAside(err)
	}
	if f.Schema > SchemaVersion {
		return nil, false, fmt.Errorf("%w (%s has schema %d, this build reads %d)", ErrNewerSchema, r.path, f.Schema, SchemaVersion)
	}
	for _, e := range f.Entries {
		out[e.ID] = e
	}
	return out, false, nil
}

// decode parses a registry file and refuses anything write would not have written:
// trailing data, no schema, an entry without an id, an id twice, an unknown state, a
// negative pid or an impossible port. Such a file cannot be trusted entry by entry (two
// entries for one id: which pid is the worker?), so it is set aside as a whole.
func decode(b []byte) (file, error) {
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&f); err != nil {
		return f, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return f, errors.New("data after the registry's JSON object")
	}
	if f.Schema == 0 {
		return f, errors.New("no schema version")
	}
	seen := make(map[string]bool, len(f.Entries))
	for i, e := range f.Entries {
		switch {
		case e.ID == "":
			return f, fmt.Errorf("entry %d has no id", i)
		case seen[e.ID]:
			return f, fmt.Errorf("id %s appears twice", e.ID)
		case !e.State.known():
			return f, fmt.Errorf("%s has an unknown state %q", e.ID, e.State)
		case e.PID < 0 || e.Port < 0 || e.Port > 65535:
			return f, fmt.Errorf("%s has pid %d, port %d", e.ID, e.PID, e.Port)
		}
		seen[e.ID] = true
	}
	return f, nil
}

func (r *Registry) moveAside(cause error) error {
	aside := fmt.Sprintf("%s.corrupt-%s", r.path, time.Now().UTC().Format("20060102T150405.000000000"))
	if err := renameFile(r.path, aside); err != nil {
		return fmt.Errorf("registry %s is corrupt (%v) and could not be moved aside: %w", r.path, cause, err)
	}
	r.log.Warn("local registry was corrupt; moved it aside",
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
	tmp, err := createTemp(dir, FileName+".tmp-*")
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
	if err := renameFile(tmp.Name(), r.path); err != nil {
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

// Subscribe delivers every change in commit order. The channel holds 256; a subscriber
// that falls further behind misses changes (it never blocks the registry) and should
// List. unsubscribe closes the channel.
func (r *Registry) Subscribe() (changes <-chan Change, unsubscribe func()) {
	return r.hub.Subscribe(broadcast.DropNewest, 256)
}

// publish hands a transaction's changes to subscribers; the caller holds pubMu.
func (r *Registry) publish(changes []Change) {
	for _, c := range changes {
		r.hub.Publish(c)
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
