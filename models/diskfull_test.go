package models

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestDownloadDiskFullKeepsPartialForResume fills a real, small filesystem (a 512 KiB
// tmpfs) in the middle of the 1.2 MB test model: the error says the disk is full, the
// bytes written so far stay in the partial, and after space is freed (the tmpfs grown)
// Resume continues from them with a Range request to a byte-identical model.
func TestDownloadDiskFullKeepsPartialForResume(t *testing.T) {
	dir := mountSmallTmpfs(t, "512k")
	srv := newModelServer(t)
	d := NewDownloader(dir, srv.Client())
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf", SHA256: sha(srv.data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "free some space") {
		t.Fatalf("download on a full disk ended with %v, want ErrDiskFull naming the fix", err)
	}
	if p := dl.Progress(); p.State != Failed || !errors.Is(p.Err, ErrDiskFull) {
		t.Fatalf("progress after disk full = %+v, want Failed with ErrDiskFull", p)
	}
	part := filepath.Join(dir, "stories260K.gguf"+PartSuffix)
	st, err := os.Stat(part)
	if err != nil || st.Size() < 64<<10 {
		t.Fatalf("partial data not kept on disk full (stat %v, err %v)", st, err)
	}
	kept := st.Size()
	got, _ := os.ReadFile(part)
	if !bytes.Equal(got, srv.data[:kept]) {
		t.Fatal("the kept partial is not the start of the served file")
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.gguf"+SidecarSuffix)); err != nil {
		t.Fatalf("resume record lost on disk full: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a partial file masquerades as the model after disk full")
	}

	// The user frees space; Resume continues from the kept bytes.
	if out, err := exec.Command("mount", "-o", "remount,size=4m", dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatalf("resume after freeing space: %v", err)
	}
	if srv.ranges.Load() == 0 {
		t.Fatalf("resume after disk full re-downloaded from zero instead of Range from byte %d", kept)
	}
	got, _ = os.ReadFile(filepath.Join(dir, "stories260K.gguf"))
	if !bytes.Equal(got, srv.data) {
		t.Fatal("model resumed after disk full is not byte-identical to the served one")
	}
}

// TestDownloadDevFullSaysDiskFull runs where mounting is not allowed: the partial is a
// symlink to /dev/full, whose writes fail with ENOSPC. The download fails with
// ErrDiskFull, keeps its resume record, and Resume succeeds once writes work again.
func TestDownloadDevFullSaysDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full on %s: %v", runtime.GOOS, err)
	}
	dir := t.TempDir()
	part := filepath.Join(dir, "stories260K.gguf"+PartSuffix)
	if err := os.Symlink("/dev/full", part); err != nil {
		t.Fatal(err)
	}
	srv := newModelServer(t)
	// The partial is this URL's (a partial without its record is not resumed).
	if err := writeSidecar(filepath.Join(dir, "stories260K.gguf"+SidecarSuffix),
		sidecar{URL: srv.URL + "/m/stories260K.gguf", Name: "stories260K.gguf"}); err != nil {
		t.Fatal(err)
	}
	d := NewDownloader(dir, srv.Client())
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	if !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write to a full device ended with %v, want ErrDiskFull wrapping ENOSPC", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.gguf"+SidecarSuffix)); err != nil {
		t.Fatalf("resume record lost on disk full: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed download left a model behind")
	}

	if err := os.Remove(part); err != nil { // space is back
		t.Fatal(err)
	}
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatalf("resume once writes work: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "stories260K.gguf"))
	if !bytes.Equal(got, srv.data) {
		t.Fatal("model resumed after disk full is not byte-identical to the served one")
	}
}

// mountSmallTmpfs mounts a tmpfs of size under a temp folder until the test ends, or
// skips the test when this process may not mount (it needs root / CAP_SYS_ADMIN).
func mountSmallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("a small tmpfs needs Linux")
	}
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root or CAP_SYS_ADMIN; TestDownloadDevFullSaysDiskFull covers ENOSPC without it): %v: %s",
			size, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
