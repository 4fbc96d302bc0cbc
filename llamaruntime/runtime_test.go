package llamaruntime

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// touch creates a file (and its folder) with some bytes.
func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("lib"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLocateOrder(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv(EnvLib, "")
	t.Setenv("YZMA_LIB", "")
	def := DefaultDir()
	if !strings.HasPrefix(def, cache) {
		t.Fatalf("DefaultDir %q is not under XDG_CACHE_HOME %q", def, cache)
	}

	// Nothing installed: a MissingError that names where it looked and the fix.
	_, err := Locate("")
	var missing *MissingError
	if !errors.Is(err, ErrMissing) || !errors.As(err, &missing) || len(missing.Looked) != 1 || missing.Looked[0] != def {
		t.Fatalf("Locate with nothing installed: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "beekeeper runtime install") || !strings.Contains(msg, EnvLib) {
		t.Fatalf("the error must name the fix: %q", msg)
	}

	touch(t, filepath.Join(def, LibraryFile()))
	if dir, err := Locate(""); err != nil || dir != def {
		t.Fatalf("the cache folder: %q %v", dir, err)
	}

	yzma := t.TempDir()
	touch(t, filepath.Join(yzma, LibraryFile()))
	t.Setenv("YZMA_LIB", yzma)
	if dir, _ := Locate(""); dir != yzma {
		t.Fatalf("$YZMA_LIB comes before the cache: got %q", dir)
	}

	own := t.TempDir()
	touch(t, filepath.Join(own, LibraryFile()))
	t.Setenv(EnvLib, own)
	if dir, _ := Locate(""); dir != own {
		t.Fatalf("$%s comes first: got %q", EnvLib, dir)
	}

	// An explicit folder without the library is an error, never a silent fallback.
	empty := t.TempDir()
	if _, err := Locate(empty); !errors.Is(err, ErrMissing) {
		t.Fatalf("an explicit empty folder must be an error, got %v", err)
	}
}

// writeTarball builds an npm-style package with the given files under package/.
func writeTarball(t *testing.T, files map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pkg.tgz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []interface{ Close() error }{tw, gz, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestExtractAndLink: only the platform's libraries are unpacked, and the unversioned
// names yzma opens point at the versioned files.
func TestExtractAndLink(t *testing.T) {
	tgz := writeTarball(t, map[string]string{
		"package/bins/linux-x64/libllama.v0.4.0.so":   "llama",
		"package/bins/linux-x64/libggml.v0.4.0.so":    "ggml",
		"package/bins/linux-x64/libggml-base.so":      "base",
		"package/bins/linux-x64/llama-addon.node":     "node addon, not a library",
		"package/bins/linux-arm64/libllama.v0.4.0.so": "other platform",
		"package/README.md":                           "readme",
	})
	dst := t.TempDir()
	n, err := extractLibs(tgz, "package/bins/linux-x64/", dst)
	if err != nil || n != 3 {
		t.Fatalf("extractLibs: %d files, %v; want 3", n, err)
	}
	if err := linkUnversioned(dst); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{"libllama.so": "llama", "libggml.so": "ggml"} {
		b, err := os.ReadFile(filepath.Join(dst, link))
		if err != nil || string(b) != want {
			t.Fatalf("%s reads %q (%v), want %q", link, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "llama-addon.node")); !os.IsNotExist(err) {
		t.Fatal("only shared libraries are unpacked")
	}
	if err := linkUnversioned(dst); err != nil {
		t.Fatalf("linking twice must be harmless: %v", err)
	}

	if _, err := extractLibs(tgz, "package/bins/win-x64/", t.TempDir()); err == nil {
		t.Fatal("a package without this platform's libraries must be an error")
	}
}

// TestExtractGPUBackendLayout: the GPU builds name their libraries libllama.vulkan.vX.so,
// and CUDA's -ext package adds fallback/libggml-cuda.so, which must not overwrite the
// main libggml-cuda.so.
func TestExtractGPUBackendLayout(t *testing.T) {
	main := writeTarball(t, map[string]string{
		"package/bins/linux-x64-cuda/libllama.cuda.v0.4.0.so": "llama",
		"package/bins/linux-x64-cuda/libggml.cuda.v0.4.0.so":  "ggml",
		"package/bins/linux-x64-cuda/libggml-cuda.so":         "cuda 13",
		"package/bins/linux-x64-cuda/libllama-common.so":      "common",
	})
	ext := writeTarball(t, map[string]string{
		"package/bins/linux-x64-cuda/fallback/libggml-cuda.so": "cuda 12",
	})
	dst := t.TempDir()
	for _, tgz := range []string{main, ext} {
		if _, err := extractLibs(tgz, "package/bins/linux-x64-cuda/", dst); err != nil {
			t.Fatal(err)
		}
	}
	if err := linkUnversioned(dst); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"libllama.so": "llama", "libggml.so": "ggml",
		"libggml-cuda.so": "cuda 13", "fallback/libggml-cuda.so": "cuda 12",
	} {
		if b, err := os.ReadFile(filepath.Join(dst, file)); err != nil || string(b) != want {
			t.Fatalf("%s reads %q (%v), want %q", file, b, err, want)
		}
	}

	evil := writeTarball(t, map[string]string{"package/bins/linux-x64/../../../escape.so": "x"})
	if _, err := extractLibs(evil, "package/bins/linux-x64/", t.TempDir()); err == nil {
		t.Fatal("a path climbing out of the folder must be refused")
	}
}

// TestInstallIsIdempotent: a finished install is recognised and nothing is fetched again.
func TestInstallIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, markerFile), []byte("done\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "") // no npm: reaching for it would fail
	var said []string
	got, err := Install(t.Context(), dir, func(f string, a ...any) { said = append(said, f) })
	if err != nil || got != dir || len(said) != 1 || !strings.Contains(said[0], "already installed") {
		t.Fatalf("Install on a finished folder: %q %v %q", got, err, said)
	}
	if _, err := Install(t.Context(), t.TempDir(), func(string, ...any) {}); err == nil || !strings.Contains(err.Error(), "npm") {
		t.Fatalf("without npm the error must say so: %v", err)
	}
}

// TestInstallNeverReplacesAUsersFolder guards `beekeeper runtime install --dir X`: a
// folder that holds other files is refused before anything is fetched, and kept whole.
func TestInstallNeverReplacesAUsersFolder(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "important.txt")
	if err := os.WriteFile(precious, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Install(t.Context(), dir, func(string, ...any) {})
	if !errors.Is(err, ErrFolderInUse) {
		t.Fatalf("Install into a folder with files: %v, want ErrFolderInUse", err)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" {
		t.Fatalf("the user's file is gone or changed: %q %v", b, err)
	}
}
