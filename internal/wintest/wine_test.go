package wintest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// EnvWinBinary names a prebuilt beekeeper.exe (scripts/test.sh passes the whole app's
// cgo build); without it the test builds the headless one, without cgo.
const EnvWinBinary = "BEEKEEPER_WIN_BIN"

// wine is one private Wine prefix with beekeeper.exe and the win-x64 runtime in it.
type wine struct {
	t       *testing.T
	bin     string // wine64
	server  string // wineserver
	dir     string // the test's folder: the prefix, outputs, the hive's home
	exe     string // beekeeper.exe
	runtime string // the win-x64 llama.cpp runtime (a Linux path)
	model   string
}

// TestWindowsBuildUnderWine runs the Windows build where CI has no Windows: under Wine
// (Debian 12's wine64 8.0), with WINEDEBUG=-all and a private WINEPREFIX.
func TestWindowsBuildUnderWine(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the Wine test runs on linux/amd64")
	}
	w := setUp(t)
	t.Run("worker generates text", w.testWorker)
	t.Run("spawn ps stop keep the registry straight", w.testHive)
	t.Run("spawner Windows tests", w.testSpawner)
	t.Run("files live under LOCALAPPDATA", w.testPaths)
}

// need finds a tool, or skips (fails under CI, where scripts/setup.sh installs it).
func need(t *testing.T, what string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found (%s): apt-get install wine64 gcc-mingw-w64-x86-64-win32, or bash scripts/setup.sh", what, strings.Join(names, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("no Windows test: " + msg)
	return ""
}

func setUp(t *testing.T) *wine {
	bin := need(t, "Wine", "wine64", "/usr/lib/wine/wine64", "wine")
	gcc := need(t, "mingw-w64", "x86_64-w64-mingw32-gcc")
	w := &wine{t: t, bin: bin, dir: t.TempDir(), model: testenv.Model(t)}
	w.server = filepath.Join(filepath.Dir(bin), "wineserver")
	if p, err := exec.LookPath("wineserver"); err == nil {
		w.server = p
	}
	root := testenv.RepoRoot(t)

	start := time.Now()
	w.exe = os.Getenv(EnvWinBinary)
	if w.exe == "" {
		w.exe = filepath.Join(w.dir, "beekeeper.exe")
		w.goBuild(root, "build", "-tags", "headless", "-o", w.exe, ".")
	}
	t.Logf("beekeeper.exe: %s (%v)", w.exe, time.Since(start).Round(time.Millisecond))

	// The Linux binary installs the Windows runtime: `runtime install --platform win-x64`.
	start = time.Now()
	bs, err := llamaruntime.PlatformBuilds("win-x64")
	if err != nil {
		t.Fatal(err)
	}
	w.runtime = bs[0].Dir
	if out, err := exec.Command(testenv.Binary(t), "runtime", "install", "--platform", "win-x64", "--dir", w.runtime).CombinedOutput(); err != nil {
		t.Fatalf("runtime install --platform win-x64: %v\n%s", err, out)
	}
	t.Logf("win-x64 runtime: %s (%v)", w.runtime, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if out, err := w.command(context.Background(), "wineboot", "-i").CombinedOutput(); err != nil {
		t.Fatalf("wineboot: %v\n%s", err, out)
	}
	t.Cleanup(func() { // ends every process of the prefix: workers a failed test left
		kill := exec.Command(w.server, "-k")
		kill.Env = append(os.Environ(), "WINEPREFIX="+filepath.Join(w.dir, "prefix"))
		_ = kill.Run()
	})
	sys32 := filepath.Join(w.dir, "prefix", "drive_c", "windows", "system32")
	if _, err := os.Stat(filepath.Join(sys32, "bcryptprimitives.dll")); err != nil {
		// Wine 8.0 lacks it; Go programs stop at start without it (testdata's comment).
		shim := filepath.Join(sys32, "bcryptprimitives.dll")
		src := filepath.Join(root, "internal", "wintest", "testdata", "bcryptprimitives.c")
		if out, err := exec.Command(gcc, "-shared", "-O2", "-s", "-o", shim, src, "-lbcrypt").CombinedOutput(); err != nil {
			t.Fatalf("build the bcryptprimitives.dll shim: %v\n%s", err, out)
		}
		t.Log("this Wine has no bcryptprimitives.dll: a ProcessPrng shim is in the prefix's system32")
	}
	t.Logf("Wine prefix: %v", time.Since(start).Round(time.Millisecond))
	return w
}

// goBuild runs go with GOOS=windows GOARCH=amd64 CGO_ENABLED=0 in the module root.
func (w *wine) goBuild(root string, args ...string) {
	w.t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// command is `wine64 ARGS...` in the prefix, with the hive's home and runtime in its
// environment.
func (w *wine) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(),
		"WINEPREFIX="+filepath.Join(w.dir, "prefix"),
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=mscoree,mshtml=", // no Mono or Gecko installers
		"BEEKEEPER_HOME="+winPath(filepath.Join(w.dir, "home")),
		llamaruntime.EnvLib+"="+winPath(w.runtime),
		"BEEKEEPER_WORKER_KEY=", "BEEKEEPER_QUEEN_TOKEN=",
	)
	return cmd
}

// run runs beekeeper.exe ARGS under Wine and returns its exit code and output. The output
// goes through a file, not a pipe: workers it starts inherit Wine's Unix descriptors and
// would hold a pipe open after it exits.
func (w *wine) run(timeout time.Duration, args ...string) (int, string) {
	w.t.Helper()
	return w.runEnv(nil, timeout, args...)
}

// runEnv is run with env added to (and overriding) the prefix's environment.
func (w *wine) runEnv(env []string, timeout time.Duration, args ...string) (int, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := os.CreateTemp(w.dir, "out-*")
	if err != nil {
		w.t.Fatal(err)
	}
	defer out.Close()
	cmd := w.command(ctx, append([]string{w.exe}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	if ctx.Err() != nil {
		w.t.Fatalf("beekeeper.exe %s: no exit within %v\n%s", strings.Join(args, " "), timeout, b)
	}
	if err != nil && cmd.ProcessState == nil {
		w.t.Fatalf("beekeeper.exe %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(b)
}

// winPath is a Linux path as Wine's Z: drive shows it.
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

func (w *wine) testWorker(t *testing.T) {
	port := testenv.FreePort(t)
	logf, err := os.Create(filepath.Join(w.dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := w.command(context.Background(), w.exe, "worker", "--model", winPath(w.model), "--port", strconv.Itoa(port), "--llama-lib", winPath(w.runtime))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // under Wine the exe is this very process
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("worker log:\n%s", b)
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitHealthy(t, base, 90*time.Second)
	t.Logf("ready under Wine after %v", time.Since(start).Round(time.Millisecond))

	text := complete(t, base, "/v1/completions", map[string]any{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0})
	t.Logf("completion: %q", text)
	text = complete(t, base, "/v1/chat/completions", map[string]any{"model": "stories260K", "max_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": "Tell me a story."}}})
	t.Logf("chat: %q", text)
}

func waitHealthy(t *testing.T, base string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within %v (last: %v)", base, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// complete posts an OpenAI request and returns the first choice's text, failing on an
// error or no text.
func complete(t *testing.T, base, path string, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil || len(out.Choices) == 0 {
		t.Fatalf("POST %s: %s %s", path, resp.Status, raw)
	}
	text := out.Choices[0].Text + out.Choices[0].Message.Content
	if strings.TrimSpace(text) == "" {
		t.Fatalf("POST %s generated no text: %s", path, raw)
	}
	return text
}

// registryEntry is what the test reads back from the hive's registry.json.
type registryEntry struct {
	ID    string `json:"id"`
	PID   int    `json:"pid"`
	Port  int    `json:"port"`
	State string `json:"state"`
}

func (w *wine) registry(t *testing.T) map[string]registryEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, "home", "state", "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Entries []registryEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("registry.json: %v\n%s", err, b)
	}
	m := map[string]registryEntry{}
	for _, e := range f.Entries {
		m[e.ID] = e
	}
	return m
}

// testHive: two spawns at once (two processes on one registry: its file lock and
// replace-by-rename under Windows rules), ps, then a stop of each from yet another
// process (an adopted worker: pid and creation time, TerminateProcess).
func (w *wine) testHive(t *testing.T) {
	var wg sync.WaitGroup
	outs := make([]string, 2)
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() { codes[i], outs[i] = w.run(3*time.Minute, "spawn", "--model", winPath(w.model)) })
	}
	wg.Wait()
	for i := range 2 {
		if codes[i] != 0 {
			t.Fatalf("spawn %d exited %d:\n%s", i, codes[i], outs[i])
		}
	}
	reg := w.registry(t)
	if len(reg) != 2 {
		t.Fatalf("registry holds %d workers after two spawns, want 2: %v", len(reg), reg)
	}
	ports := map[int]bool{}
	for id, e := range reg {
		if e.State != "ready" || e.PID <= 0 || ports[e.Port] {
			t.Fatalf("%s: %+v; want ready, a pid, a port of its own", id, e)
		}
		ports[e.Port] = true
		complete(t, "http://127.0.0.1:"+strconv.Itoa(e.Port), "/v1/completions", map[string]any{"model": "stories260K", "prompt": "Once", "max_tokens": 8})
	}
	code, out := w.run(time.Minute, "ps")
	t.Logf("beekeeper.exe ps:\n%s", out)
	for id := range reg {
		if code != 0 || !strings.Contains(out, id) {
			t.Fatalf("ps (exit %d) does not list %s", code, id)
		}
	}
	for id, e := range reg {
		start := time.Now()
		if code, out := w.run(time.Minute, "stop", id); code != 0 {
			t.Fatalf("stop %s exited %d:\n%s", id, code, out)
		}
		t.Logf("stop %s: %v", id, time.Since(start).Round(time.Millisecond))
		if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(e.Port) + "/health"); err == nil {
			resp.Body.Close()
			t.Fatalf("%s still answers on port %d after stop", id, e.Port)
		}
	}
	for id, e := range w.registry(t) {
		if e.State != "exited" {
			t.Fatalf("%s is %s after its stop, want exited", id, e.State)
		}
	}
	if code, out := w.run(time.Minute, "ps"); code != 0 || strings.Count(out, "exited") != 2 {
		t.Fatalf("ps after the stops (exit %d):\n%s", code, out)
	}
}

// testSpawner runs the spawner's Windows tests (Job Objects, CTRL_BREAK, StopPID,
// WatchExit) under Wine.
func (w *wine) testSpawner(t *testing.T) {
	exe := filepath.Join(w.dir, "spawner.test.exe")
	w.goBuild(testenv.RepoRoot(t), "test", "-c", "-o", exe, "./spawner")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log, err := os.Create(filepath.Join(w.dir, "spawner-test.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := w.command(ctx, exe, "-test.v", "-test.count=1")
	cmd.Stdout, cmd.Stderr = log, log
	err = cmd.Run()
	b, _ := os.ReadFile(log.Name())
	t.Logf("spawner.test.exe under Wine:\n%s", b)
	if err != nil || !bytes.Contains(b, []byte("\nPASS")) {
		t.Fatalf("spawner.test.exe: %v", err)
	}
}

// testPaths: without BEEKEEPER_HOME, state and cache are under %LOCALAPPDATA%\beekeeper.
func (w *wine) testPaths(t *testing.T) {
	code, out := w.runEnv([]string{"BEEKEEPER_HOME=", llamaruntime.EnvLib + "="}, time.Minute, "runtime", "list")
	want := `AppData\Local\beekeeper\cache\llama.cpp\win-x64-` + llamaruntime.NpmVersion
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("runtime list (exit %d) does not show %s:\n%s", code, want, out)
	}
	t.Logf("runtime list:\n%s", out)
	if code, out = w.runEnv([]string{"BEEKEEPER_HOME="}, time.Minute, "ps"); code != 0 {
		t.Fatalf("ps in %%LOCALAPPDATA%% exited %d:\n%s", code, out)
	}
	matches, _ := filepath.Glob(filepath.Join(w.dir, "prefix", "drive_c", "users", "*", "AppData", "Local", "beekeeper", "state", "registry.json*"))
	if len(matches) == 0 {
		t.Fatal("ps made no registry under %LOCALAPPDATA%\\beekeeper\\state")
	}
}
