package localregistry

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestTransitionTable(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		ok       bool
	}{
		{"", StateStarting, true}, // a claim
		{"", StateReady, true},    // adopted while serving
		{"", StateExited, false},
		{"", "", false},
		{StateStarting, StateStarting, true}, // load progress
		{StateStarting, StateReady, true},
		{StateStarting, StateCrashed, true},
		{StateReady, StateStopping, true},
		{StateReady, StateStarting, false},
		{StateStopping, StateExited, true},
		{StateStopping, StateReady, true}, // a failed stop
		{StateExited, StateReady, false},  // never revived
		{StateExited, StateCrashed, false},
		{StateExited, StateExited, true}, // a late exit code
		{StateCrashed, StateExited, true},
		{StateCrashed, StateReady, false},
		{"zombie", "zombie", false},
	} {
		if got := CanTransition(tc.from, tc.to); got != tc.ok {
			t.Errorf("CanTransition(%q, %q) = %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}

// Every writer goes through the table, Update included: a forbidden change is refused
// whole, and the file and the subscribers see nothing.
func TestTransitionsAreCheckedForEveryWriter(t *testing.T) {
	r, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := entry("worker-llm-1")
	e.PID = 42
	if err := r.Put(e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Transition(e.ID, 43, func(x *Entry) error { x.State = StateStopping; return nil }); !errors.Is(err, ErrReplaced) {
		t.Fatalf("Transition of another pid = %v, want ErrReplaced", err)
	}
	if _, err := r.Transition("nope", 42, func(*Entry) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Transition of an unknown id = %v, want ErrNotFound", err)
	}
	got, err := r.Transition(e.ID, 42, func(x *Entry) error { x.State = StateExited; return nil })
	if err != nil || got.State != StateExited {
		t.Fatalf("ready -> exited = %+v, %v", got, err)
	}
	ch, unsub := r.Subscribe()
	defer unsub()
	before, _ := os.ReadFile(r.Path())
	if _, err := r.Transition(e.ID, 42, func(x *Entry) error { x.State = StateReady; return nil }); !errors.Is(err, ErrBadTransition) {
		t.Fatalf("exited -> ready = %v, want ErrBadTransition", err)
	}
	if _, err := r.Modify(e.ID, func(x *Entry) { x.State = StateStarting }); !errors.Is(err, ErrBadTransition) {
		t.Fatalf("Modify exited -> starting = %v, want ErrBadTransition", err)
	}
	if after, _ := os.ReadFile(r.Path()); string(after) != string(before) {
		t.Fatal("a refused transition changed the file")
	}
	if cur, _ := r.Get(e.ID); cur.State != StateExited {
		t.Fatalf("a refused transition left the entry %s", cur.State)
	}
	select {
	case c := <-ch:
		t.Fatalf("a refused transition published %+v", c)
	default:
	}
	// A new process under the id is a new entry: it begins as a start.
	next := entry(e.ID)
	next.PID, next.State = 77, StateStarting
	if err := r.Put(next); err != nil {
		t.Fatalf("a new process under an exited id: %v", err)
	}
}

// A corrupt file is set aside and the registry starts from the workers that still run
// (the Rebuild hook), in the same transaction: duplicate ids, trailing data and unknown
// states count as corrupt, since the file cannot be trusted entry by entry.
func TestCorruptFileIsRebuiltFromRunningWorkers(t *testing.T) {
	running := entry("worker-llm-9")
	running.PID, running.State = 4242, StateStarting
	for name, content := range map[string]string{
		"truncated":     `{"schema":1,"entries":[{"id":`,
		"duplicate ids": `{"schema":1,"entries":[{"id":"worker-llm-9","pid":4242,"state":"ready"},{"id":"worker-llm-9","pid":7,"state":"ready"}]}`,
		"trailing data": `{"schema":1,"entries":[]}}{`,
		"unknown state": `{"schema":1,"entries":[{"id":"worker-llm-9","pid":4242,"state":"zombie"}]}`,
		"no id":         `{"schema":1,"entries":[{"pid":4242,"state":"ready"}]}`,
		"null":          `null`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			calls := 0
			r, err := OpenWith(dir, Options{Rebuild: func() []Entry { calls++; return []Entry{running} }})
			if err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Fatalf("Rebuild called %d times, want 1", calls)
			}
			es := r.List()
			if len(es) != 1 || es[0].ID != running.ID || es[0].PID != running.PID {
				t.Fatalf("rebuilt registry = %+v, want the running worker only", es)
			}
			if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
				t.Fatalf("corrupt file not set aside: %v", aside)
			}
			b, _ := os.ReadFile(path)
			if !strings.Contains(string(b), `"pid": 4242`) {
				t.Fatalf("the rebuilt registry was not written:\n%s", b)
			}
			if err := r.Reload(); err != nil || calls != 1 {
				t.Fatalf("a sound file rebuilt again (calls %d, err %v)", calls, err)
			}
		})
	}
}

// A write that fails (a full disk) is the caller's error, and nothing is reported changed:
// not by Get, not to subscribers, not in the file.
func TestFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("a full disk needs a small tmpfs, and mounting one failed (root only): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := entry("worker-llm-1")
	if err := r.Put(e); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	ch, unsub := r.Subscribe()
	defer unsub()
	before, _ := os.ReadFile(r.Path())
	_, err = r.Transition(e.ID, e.PID, func(x *Entry) error { x.State = StateExited; return nil })
	if err == nil || !strings.Contains(err.Error(), "free disk space") {
		t.Fatalf("a write on a full disk = %v, want an error that names the fix", err)
	}
	if cur, _ := r.Get(e.ID); cur.State != StateReady {
		t.Fatalf("Get says %s after a failed write", cur.State)
	}
	if after, _ := os.ReadFile(r.Path()); string(after) != string(before) {
		t.Fatal("a failed write changed the file")
	}
	select {
	case c := <-ch:
		t.Fatalf("a failed write published %+v", c)
	default:
	}
}
