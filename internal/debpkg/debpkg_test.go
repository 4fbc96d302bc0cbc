package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// EnvInstall, set to 1 where the test runs as root on a throwaway machine (CI: see
// scripts/test.sh), installs the package with dpkg -i into the machine itself, and
// removes it at the end; otherwise the package is unpacked with dpkg-deb -x into a
// temporary folder, which needs no root and changes nothing.
const EnvInstall = "BEEKEEPER_DEB_INSTALL"

var units = []string{"beekeeper-hive.service", "beekeeper-queen.service"}

// TestDebPackage builds the .deb from the built binary, checks its control data and
// files, installs it (or unpacks it), runs `beekeeper --version` and a worker on the
// test model from the installed binary, and checks the systemd user units.
func TestDebPackage(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb")
	start := time.Now()
	deb := buildDeb(t, testenv.Binary(t))
	st, _ := os.Stat(deb)
	t.Logf("built %s (%d MB) in %v", filepath.Base(deb), st.Size()>>20, time.Since(start).Round(time.Millisecond))
	if want := "beekeeper_" + wire.Version + "_" + debArch[runtime.GOARCH] + ".deb"; filepath.Base(deb) != want {
		t.Fatalf("package file %s, want %s", filepath.Base(deb), want)
	}

	out := run(t, dpkgDeb, "-f", deb, "Package", "Version", "Depends", "Recommends")
	for _, want := range []string{"Package: beekeeper", "Version: " + wire.Version, "libffi8", "libgl1", "Recommends: npm"} {
		if !strings.Contains(out, want) {
			t.Fatalf("control data lacks %q:\n%s", want, out)
		}
	}
	out = run(t, dpkgDeb, "-c", deb)
	for _, want := range []string{"./usr/bin/beekeeper", "./usr/share/applications/" + appID + ".desktop",
		"./usr/share/icons/hicolor/512x512/apps/" + appID + ".png", "./usr/lib/systemd/user/beekeeper-hive.service",
		"./usr/lib/systemd/user/beekeeper-queen.service", "./usr/share/doc/beekeeper/hive.env"} {
		if !strings.Contains(out, want+"\n") {
			t.Fatalf("the package lacks %s:\n%s", want, out)
		}
	}

	root := install(t, dpkgDeb, deb)
	bin := filepath.Join(root, "usr", "bin", "beekeeper")
	out = run(t, bin, "--version")
	if !strings.HasPrefix(out, "beekeeper "+wire.Version+"\n") {
		t.Fatalf("beekeeper --version from the package:\n%s", out)
	}
	t.Logf("%s --version:\n%s", bin, out)

	t.Setenv(testenv.EnvBinary, bin)
	w := testenv.StartWorker(t)
	defer w.Stop(10 * time.Second)
	t.Logf("worker from the package: %q", complete(t, w.URL))

	verifyUnits(t, root)
	if v, err := exec.LookPath("desktop-file-validate"); err == nil {
		run(t, v, filepath.Join(root, "usr", "share", "applications", appID+".desktop"))
	}
}

// buildDeb runs the packager as `go run ./internal/debpkg` would, built apart from this
// test binary: under -race its compression takes ten times as long.
func buildDeb(t *testing.T, binary string) string {
	t.Helper()
	dir := t.TempDir()
	packager := filepath.Join(dir, "debpkg")
	cmd := exec.Command("go", "build", "-o", packager, "./internal/debpkg")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./internal/debpkg: %v\n%s", err, out)
	}
	return strings.TrimSpace(run(t, packager, "-bin", binary, "-out", filepath.Join(dir, "dist")))
}

// install installs the package and returns the root it is installed under ("/" after
// dpkg -i).
func install(t *testing.T, dpkgDeb, deb string) string {
	t.Helper()
	if os.Getenv(EnvInstall) != "1" {
		root := t.TempDir()
		run(t, dpkgDeb, "-x", deb, root)
		t.Logf("unpacked with dpkg-deb -x into %s (%s=1 installs it with dpkg -i instead)", root, EnvInstall)
		return root
	}
	if os.Getuid() != 0 {
		t.Fatalf("%s=1 needs root: dpkg -i installs into this machine", EnvInstall)
	}
	dpkg := need(t, "dpkg")
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "-r", "beekeeper").CombinedOutput(); err != nil {
			t.Errorf("dpkg -r beekeeper: %v\n%s", err, out)
		}
	})
	t.Logf("dpkg -i:\n%s", run(t, dpkg, "-i", deb))
	return "/"
}

// verifyUnits runs systemd-analyze verify --user on the unit files: it checks their
// syntax and that their commands exist. It prints problems without failing (a misspelt
// setting is "ignoring"), so any output fails the test. In a container with no user
// session it needs XDG_RUNTIME_DIR; the units of an unpacked package are checked as
// copies whose commands point into the unpacked folder.
func verifyUnits(t *testing.T, root string) {
	t.Helper()
	analyze := need(t, "systemd-analyze")
	var paths []string
	for _, u := range units {
		p := filepath.Join(root, "usr", "lib", "systemd", "user", u)
		if root != "/" {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			p = filepath.Join(t.TempDir(), u)
			b = bytes.ReplaceAll(b, []byte("/usr/bin/beekeeper"), []byte(filepath.Join(root, "usr", "bin", "beekeeper")))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		paths = append(paths, p)
	}
	runtimeDir := t.TempDir()
	if err := os.Chmod(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--user"}, paths...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify --user %s: %v\n%s", strings.Join(paths, " "), err, out)
	}
	t.Logf("systemd-analyze verify --user: %s clean", strings.Join(units, ", "))
}

// need finds a tool, or skips (fails under CI, where scripts/setup.sh installs it).
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: bash scripts/setup.sh installs it", name)
	}
	t.Skipf("no .deb test: %s not found (a Debian or Ubuntu machine has it)", name)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// complete asks the worker for a few tokens and returns them.
func complete(t *testing.T, base string) string {
	t.Helper()
	body := `{"model":"stories260K","prompt":"Once upon a time","max_tokens":12,"temperature":0}`
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var c struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &c) != nil || len(c.Choices) == 0 || strings.TrimSpace(c.Choices[0].Text) == "" {
		t.Fatalf("completion: %s %s", resp.Status, raw)
	}
	return c.Choices[0].Text
}
