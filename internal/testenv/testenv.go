// Package testenv owns what integration tests share: the real test model (sha256
// checked), the llama.cpp runtime, and one built beekeeper binary per test process.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// ModelSHA256 is the published digest of ../shared/models/stories260K.gguf.
const ModelSHA256 = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"

// EnvModel names the test model's path; the default is ../shared/models/stories260K.gguf
// beside the repository.
const EnvModel = "BEEKEEPER_TEST_MODEL"

// ModelSource is where the public test model comes from, for a clone without
// ../shared: llama.cpp's own CI model, from Karpathy's llama2.c "tinyllamas" (MIT).
const ModelSource = "https://huggingface.co/ggml-org/models-moved/resolve/main/tinyllamas/stories260K.gguf"

// EnvBinary names a prebuilt beekeeper binary; scripts/test.sh sets it so that every
// test package shares one build.
const EnvBinary = "BEEKEEPER_BIN"

// BuildTags are the tags every build of the app uses (scripts/setup.sh builds with the
// same): the fyneDo migration, and no bundled emoji font (see docs/desktop.md).
const BuildTags = "migrated_fynedo no_emoji"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error

	modelOnce sync.Once
	modelPath string
	modelErr  error

	binOnce sync.Once
	binPath string
	binErr  error
)

// RepoRoot is the module root (the folder holding go.mod).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod above the test's folder")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		tb.Fatalf("testenv: %v", rootErr)
	}
	return rootDir
}

// Model returns the path of the real test model after checking its sha256. A missing or
// altered model fails the test with the reason: it never passes silently.
func Model(tb testing.TB) string {
	tb.Helper()
	root := RepoRoot(tb)
	modelOnce.Do(func() {
		p := filepath.Join(root, "..", "shared", "models", "stories260K.gguf")
		if v := os.Getenv(EnvModel); v != "" {
			p = v
		}
		f, err := os.Open(p)
		if err != nil {
			modelErr = fmt.Errorf("test model missing: %w (download stories260K.gguf, 1.2 MB, sha256 %s, from %s and set %s to its path, or put it at ../shared/models/ beside the repository)",
				err, ModelSHA256, ModelSource, EnvModel)
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			modelErr = err
			return
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != ModelSHA256 {
			modelErr = fmt.Errorf("test model %s has sha256 %s, want %s", p, got, ModelSHA256)
			return
		}
		modelPath, _ = filepath.Abs(p)
	})
	if modelErr != nil {
		tb.Fatalf("testenv: %v", modelErr)
	}
	return modelPath
}

// Runtime returns the llama.cpp runtime folder, failing the test with the fix when it is
// not installed.
func Runtime(tb testing.TB) string {
	tb.Helper()
	dir, err := llamaruntime.Locate("")
	if err != nil {
		tb.Fatalf("testenv: %v (scripts/test.sh installs it)", err)
	}
	return dir
}

// Binary returns a built beekeeper binary: $BEEKEEPER_BIN when set, else one built once
// per test process (without -race: the binary is the thing under test, not the test).
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	root := RepoRoot(tb)
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "beekeeper-bin-*")
		if err != nil {
			binErr = err
			return
		}
		out := filepath.Join(dir, "beekeeper")
		cmd := exec.Command("go", "build", "-tags", BuildTags, "-o", out, ".")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, b)
			return
		}
		binPath = out
	})
	if binErr != nil {
		tb.Fatalf("testenv: %v", binErr)
	}
	return binPath
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
