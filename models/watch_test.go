package models

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The models folder is watched: once when the watch is in place, then a copied-in
// .gguf is reported once (a burst of writes is one change), other files are not, and
// the watcher ends with its context.
func TestWatchReportsModelFilesCoalesced(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, dir, 100*time.Millisecond, func() { changes <- struct{}{} })
	}()
	// The first call says the watch is in place.
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no first call once the folder is watched")
	}
	quietFor := func(d time.Duration) {
		t.Helper()
		select {
		case <-changes:
			t.Fatal("a change was reported for nothing that matters")
		case <-time.After(d):
		}
	}
	quietFor(300 * time.Millisecond)

	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "m.gguf"+PartSuffix), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	quietFor(400 * time.Millisecond)

	f, err := os.Create(filepath.Join(dir, "copied.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // a copy writes in pieces
		f.Write(make([]byte, 4096))
	}
	f.Close()
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported for a .gguf copied into the folder")
	}
	quietFor(500 * time.Millisecond) // one copy, one change

	if err := os.Remove(filepath.Join(dir, "copied.gguf")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported for a removed .gguf")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch ended with %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Watch did not end with its context")
	}
}

func TestWatchMissingFolderSaysSo(t *testing.T) {
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "gone"), time.Millisecond, func() {})
	if err == nil {
		t.Fatal("watching a missing folder succeeded")
	}
}
