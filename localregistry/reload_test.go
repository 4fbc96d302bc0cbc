package localregistry

import (
	"bytes"
	"os"
	"testing"
)

// Reload runs four times a second in the app: a file this instance last read or wrote
// must not be read again, and any write by another instance must be.
func TestReloadRereadsOnlyAChangedFile(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(entry("worker-llm-1")); err != nil {
		t.Fatal(err)
	}

	// Swap one id in place for another of the same length, and put the modification
	// time back: same inode, size and time, so Reload must not look inside.
	path := a.Path()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	swapped := bytes.ReplaceAll(raw, []byte("worker-llm-1"), []byte("worker-llm-2"))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(swapped, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("worker-llm-1"); !ok {
		t.Fatal("Reload re-read a file whose inode, size and time had not changed")
	}

	// An edit in place that changes the time is seen.
	if err := os.Chtimes(path, st.ModTime(), st.ModTime().Add(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("worker-llm-2"); !ok {
		t.Fatal("Reload missed an edit that changed the file's time")
	}

	// Another instance's write (a rename, so a new inode) is seen, however fast.
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		id := "worker-llm-" + string(rune('a'+i))
		if err := b.Put(entry(id)); err != nil {
			t.Fatal(err)
		}
		if err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Get(id); !ok {
			t.Fatalf("Reload missed %s, written by another instance", id)
		}
	}

	// So is the file's removal.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(a.List()); n != 0 {
		t.Fatalf("after the file was removed the registry holds %d entries, want 0", n)
	}
}
