package workerkey

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestNewKeysAreValidAndDistinct(t *testing.T) {
	a, b := New(), New()
	if !Valid(a) || !Valid(b) || a == b || len(a) < 50 {
		t.Fatalf("keys %q %q", a, b)
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", MaxLen+1), strings.Repeat("a", 20) + " ", strings.Repeat("a", 20) + "\x00"} {
		if Valid(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestKeyFile: written owner-only in an owner-only folder, read back, removed; a file
// whose worker was killed (so it could not remove it) is pruned by the next worker.
func TestKeyFile(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	if k, pid, err := Read("worker-llm-8080", 8080); k != "" || pid != 0 || err != nil {
		t.Fatalf("missing file: %q %d %v", k, pid, err)
	}
	key := New()
	path, err := Write("worker-llm-8080", 8080, key)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(home, "state", "worker-keys", "worker-llm-8080.8080.key") {
		t.Fatalf("path %s", path)
	}
	st, _ := os.Stat(path)
	dir, _ := os.Stat(filepath.Dir(path))
	if st.Mode().Perm() != 0o600 || dir.Mode().Perm() != 0o700 {
		t.Fatalf("file %v, folder %v; want 0600 and 0700", st.Mode(), dir.Mode())
	}
	if got, pid, err := Read("worker-llm-8080", 8080); got != key || pid != os.Getpid() || err != nil {
		t.Fatalf("read %q %d %v, want %q %d", got, pid, err, key, os.Getpid())
	}
	for _, id := range []string{"", ".", "..", "a/b"} {
		if _, err := Write(id, 1, key); err == nil {
			t.Errorf("id %q written", id)
		}
	}

	// A killed worker's file: its pid no longer runs.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := Path("worker-llm-9090", 9090)
	if err := os.WriteFile(stale, []byte(New()+"\n"+strconv.Itoa(dead.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Write("worker-llm-7070", 7070, New()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("a dead worker's key file was kept: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a live worker's key file was pruned: %v", err) // this test process wrote it
	}
	Remove("worker-llm-8080", 8080)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("removed file still there: %v", err)
	}
}

// TestRemoveKeepsSuccessorsFile: a worker that stops after a successor with the same id
// took its port (and wrote its own key file) leaves the successor's file alone.
func TestRemoveKeepsSuccessorsFile(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	if _, err := Write("worker-llm-8080", 8080, New()); err != nil {
		t.Fatal(err)
	}
	successor := os.Getpid() + 1 // another process's file, as the successor writes it
	theirs := New()
	if err := os.WriteFile(Path("worker-llm-8080", 8080), []byte(theirs+"\n"+strconv.Itoa(successor)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	Remove("worker-llm-8080", 8080)
	if k, pid, err := Read("worker-llm-8080", 8080); k != theirs || pid != successor || err != nil {
		t.Fatalf("successor's key file: %q %d %v, want %q %d", k, pid, err, theirs, successor)
	}
}
