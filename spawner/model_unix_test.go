//go:build unix

package spawner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO named .gguf used to hang a start for good (> 80 s): opening it waits for a
// writer that never comes. Anything but a regular file is refused at once, before a
// port is reserved or a process started (hive: TestSpawnRefusesAFIFOModelAndRecordsNothing).
func TestStartRefusesNonRegularModelFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.gguf")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	folder := filepath.Join(dir, "folder.gguf")
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	sp, err := New(Config{Binary: "/bin/false", LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, folder, "/dev/null"} {
		done := make(chan error, 1)
		go func() { // a hang must fail the test, not stall it: a writer ends it below
			_, err := sp.Start(context.Background(), Spec{ModelPath: path}, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrModelLoad) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("start on %s = %v, want ErrModelLoad naming a non-regular file", path, err)
			}
		case <-time.After(3 * time.Second):
			if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close() // unblocks the open, ending the goroutine
			}
			<-done
			t.Fatalf("start on %s hung", path)
		}
	}
}
