package ui

import (
	"bytes"
	"context"
	"fmt"
	"image"
	_ "image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
	"golang.org/x/sys/unix"
)

// The real-window tests start the built app on the X display of xvfb-run
// (scripts/test.sh), so they need: DISPLAY, xdotool, and ImageMagick's import.

func needDisplay(tb testing.TB) {
	tb.Helper()
	if os.Getenv("DISPLAY") == "" {
		tb.Skip("no X display: run under xvfb-run -a -s '-screen 0 1280x800x24' (scripts/test.sh does)")
	}
	for _, tool := range []string{"xdotool", "import"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("%s not found: apt-get install xdotool imagemagick", tool)
		}
	}
}

// spawnDetached spawns n real workers in home's registry from an in-process hive, then
// closes the hive without stopping them: exactly what an app leaves behind when it quits
// with workers running. It returns their ids.
func spawnDetached(tb testing.TB, home string, n int) []string {
	tb.Helper()
	port := testenv.FreePort(tb)
	h, err := hive.Open(hive.Options{
		StateDir: filepath.Join(home, "state"), PortMin: port, PortMax: port + 40,
		WorkerBinary: testenv.Binary(tb), LlamaLib: testenv.Runtime(tb),
	})
	if err != nil {
		tb.Fatalf("hive.Open: %v", err)
	}
	defer h.Close(false)
	var ids []string
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		e, err := h.Spawn(ctx, hive.SpawnRequest{ModelPath: testenv.Model(tb), CtxSize: 256, Threads: 1}, nil)
		cancel()
		if err != nil {
			tb.Fatalf("spawn: %v", err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// stopAll stops every worker of home's registry (test cleanup).
func stopAll(tb testing.TB, home string) {
	h, err := hive.Open(hive.Options{StateDir: filepath.Join(home, "state"), WorkerBinary: testenv.Binary(tb)})
	if err != nil {
		tb.Errorf("reopen hive for cleanup: %v", err)
		return
	}
	if err := h.Close(true); err != nil {
		tb.Errorf("stop workers: %v", err)
	}
}

// runningApp is the built beekeeper app under test.
type runningApp struct {
	cmd    *exec.Cmd
	out    *testenv.SyncBuffer
	window string // X window id
	start  time.Time
	mapped time.Duration // from exec to the window being on the display
}

// startApp starts the app with its state in home and waits for its window; args go to
// the app (e.g. gui --debug).
func startApp(tb testing.TB, home string, args ...string) *runningApp {
	tb.Helper()
	ra := &runningApp{out: &testenv.SyncBuffer{}}
	// The pointer goes to a corner the window never covers: Fyne 2.7.1 dereferences a
	// nil GLFW window when a cursor change (the pointer over a text field as the window
	// maps) is processed between a close request and the window's destruction, which a
	// SIGTERM right after start hits.
	_ = exec.Command("xdotool", "mousemove", "0", "0").Run()
	env := append(os.Environ(),
		"BEEKEEPER_HOME="+home, // settings too: the app keeps Fyne's preferences under it
		"LANG=en_US.UTF-8",
	)
	launch := func() {
		ra.cmd = exec.Command(testenv.Binary(tb), args...)
		ra.cmd.Env = env
		ra.cmd.Stdout, ra.cmd.Stderr = ra.out, ra.out
		ra.start = time.Now()
		if err := ra.cmd.Start(); err != nil {
			tb.Fatalf("start app: %v", err)
		}
	}
	launch()
	tb.Cleanup(func() {
		if ra.cmd.ProcessState == nil {
			_ = ra.cmd.Process.Kill()
			_ = ra.cmd.Wait()
		}
	})
	// Normally well under a second; the margin is for a machine busy with the rest of
	// the suite (software OpenGL compiles its shaders on the CPU).
	deadline := time.Now().Add(45 * time.Second)
	retried := false
	for {
		out, err := exec.Command("xdotool", "search", "--onlyvisible", "--pid", strconv.Itoa(ra.cmd.Process.Pid), "--name", "^Beekeeper$").Output()
		if err == nil && len(bytes.Fields(out)) > 0 {
			ra.window = string(bytes.Fields(out)[0])
			ra.mapped = time.Since(ra.start)
			return ra
		}
		// The X server refused the connection once in CI, right after the previous app
		// closed the display's last one (never seen here, 30 tries under load): that is
		// the test's display, not the app, so it gets one more try.
		if !retried && strings.Contains(ra.out.String(), "Failed to open display") {
			retried = true
			_ = ra.cmd.Wait()
			tb.Logf("the X server refused the app's connection; starting it again:\n%s", ra.out.String())
			time.Sleep(time.Second)
			ra.out = &testenv.SyncBuffer{}
			launch()
			continue
		}
		if time.Now().After(deadline) {
			// The process state tells a hang from an early exit; SIGQUIT makes the Go
			// runtime print every goroutine, which says where start-up hangs.
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", ra.cmd.Process.Pid))
			state := "gone"
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "State:") {
					state = strings.TrimSpace(strings.TrimPrefix(line, "State:"))
				}
			}
			_ = ra.cmd.Process.Signal(syscall.SIGQUIT)
			time.Sleep(2 * time.Second)
			tb.Fatalf("no Beekeeper window within 45s (process state %s); app output (goroutines after SIGQUIT):\n%s", state, ra.out.String())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// screenshot captures the app's window, polling until content is drawn (more than a
// handful of colours) and drawn returns true for it, and returns the PNG.
func (ra *runningApp) screenshot(tb testing.TB, what string, drawn func(image.Image) bool) []byte {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		png, err := exec.Command("import", "-window", ra.window, "png:-").Output()
		if err == nil {
			if img, _, err := image.Decode(bytes.NewReader(png)); err == nil && colours(img) > 16 && drawn(img) {
				return png
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("window never showed %s (err %v); app output:\n%s", what, err, ra.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func colours(img image.Image) int {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	return len(seen)
}

// showsWorkersTable tells the workers table from the empty state on a screenshot: the
// table has its "Spawn worker" button (theme primary, #296FF6 in the dark theme) at the
// top left, under the tab bar; the empty state has it in the middle. Without this the
// artifact could show the empty state (it once did: an earlier first frame did).
func showsWorkersTable(img image.Image) bool {
	primary := 0
	for y := 48; y < 140; y++ {
		for x := 0; x < 400; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if near(r>>8, 0x29) && near(g>>8, 0x6f) && near(b>>8, 0xf6) {
				primary++
			}
		}
	}
	return primary > 1500 // the button is about 150x36 px
}

func near(v uint32, want int) bool { d := int(v) - want; return d > -12 && d < 12 }

// quit sends SIGTERM and wants exit 0 within 10 s.
func (ra *runningApp) quit(tb testing.TB) {
	tb.Helper()
	if err := ra.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- ra.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("app exited with %v after SIGTERM; output:\n%s", err, ra.out.String())
		}
	case <-time.After(10 * time.Second):
		_ = ra.cmd.Process.Kill()
		<-done
		tb.Fatalf("app still running 10s after SIGTERM; output:\n%s", ra.out.String())
	}
}

// waitExit wants the app to exit 0 within 10 s by itself.
func (ra *runningApp) waitExit(tb testing.TB, after string) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- ra.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("app exited with %v after %s; output:\n%s", err, after, ra.out.String())
		}
	case <-time.After(10 * time.Second):
		_ = ra.cmd.Process.Kill()
		<-done
		tb.Fatalf("app still running 10s after %s; output:\n%s", after, ra.out.String())
	}
}

// keys sends key strokes (xdotool key syntax) to the app's window, which takes the
// keyboard first.
func (ra *runningApp) keys(tb testing.TB, keys ...string) {
	tb.Helper()
	if out, err := exec.Command("xdotool", "windowfocus", "--sync", ra.window).CombinedOutput(); err != nil {
		tb.Fatalf("xdotool windowfocus: %v %s", err, out)
	}
	for _, k := range keys {
		if out, err := exec.Command("xdotool", "key", "--clearmodifiers", k).CombinedOutput(); err != nil {
			tb.Fatalf("xdotool key %s: %v %s", k, err, out)
		}
		time.Sleep(150 * time.Millisecond) // one frame or so between strokes, as a person types
	}
}

// click clicks at (x, y) inside the app's window.
func (ra *runningApp) click(tb testing.TB, x, y int) {
	tb.Helper()
	args := []string{"mousemove", "--window", ra.window, "--sync", strconv.Itoa(x), strconv.Itoa(y), "click", "1"}
	if out, err := exec.Command("xdotool", args...).CombinedOutput(); err != nil {
		tb.Fatalf("xdotool %v: %v %s", args, err, out)
	}
}

// size is the window's size on the display.
func (ra *runningApp) size(tb testing.TB) (w, h int) {
	tb.Helper()
	out, err := exec.Command("xdotool", "getwindowgeometry", "--shell", ra.window).Output()
	if err != nil {
		tb.Fatalf("xdotool getwindowgeometry: %v", err)
	}
	for _, line := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(line, "WIDTH="); ok {
			w, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(line, "HEIGHT="); ok {
			h, _ = strconv.Atoi(v)
		}
	}
	return w, h
}

// resize asks for a window size and waits until the window has it (or says what it got).
func (ra *runningApp) resize(tb testing.TB, w, h int) {
	tb.Helper()
	if out, err := exec.Command("xdotool", "windowsize", "--sync", ra.window, strconv.Itoa(w), strconv.Itoa(h)).CombinedOutput(); err != nil {
		tb.Fatalf("xdotool windowsize: %v %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		gw, gh := ra.size(tb)
		if gw == w && gh == h {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("window is %d×%d, asked for %d×%d", gw, gh, w, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until the app's output has text.
func (ra *runningApp) waitLog(tb testing.TB, what, text string) {
	tb.Helper()
	testenv.WaitFor(tb, what, 10*time.Second, func() bool { return strings.Contains(ra.out.String(), text) })
}

// screenKeys are the menu's shortcuts to each screen; Workers, shown at start, comes
// after the others, and Models last (see the test below).
var screenKeys = []struct{ key, screen string }{
	{"ctrl+2", "Chat"}, {"ctrl+4", "Queen"}, {"ctrl+l", "Logs"}, {"ctrl+comma", "Settings"},
	{"ctrl+1", "Workers"}, {"ctrl+3", "Models"},
}

// TestRealWindowMenuShortcutsWorkInTextFields: on a real window, Ctrl+L and Ctrl+N work
// while a text field has the focus (Fyne gave every shortcut to the focused field, which
// swallowed them), every screen is reached by its shortcut without the window growing
// past 800 px (issue 13: the window grew by itself), and Ctrl+Q quits (no worker runs, so
// without a question) with exit 0.
func TestRealWindowMenuShortcutsWorkInTextFields(t *testing.T) {
	needDisplay(t)
	home := t.TempDir()
	ra := startApp(t, home, "gui", "--debug")
	ra.screenshot(t, "the first frame", func(image.Image) bool { return true })
	ra.resize(t, 800, 500)
	for _, s := range screenKeys {
		ra.keys(t, s.key)
		ra.waitLog(t, "the "+s.screen+" screen", `msg="screen shown" screen=`+s.screen)
		time.Sleep(300 * time.Millisecond) // a frame or two for the screen's layout
		w, h := ra.size(t)
		switch {
		case s.screen == "Models":
			// Its layout is being reworked elsewhere (models_test.go checks it); said here.
			t.Logf("showing Models: the window is %d×%d", w, h)
		case w != 800 || h != 500:
			t.Errorf("showing %s made the window %d×%d, want it to stay 800×500", s.screen, w, h)
		}
	}

	// Into the message box (the Chat screen focuses it; the click makes sure), type, then
	// the shortcuts.
	ra.keys(t, "ctrl+2")
	ra.click(t, 560, 460)
	logs := strings.Count(ra.out.String(), `screen=Logs`)
	ra.keys(t, "h", "i", "ctrl+l")
	testenv.WaitFor(t, "Ctrl+L in the message box to show Logs", 10*time.Second, func() bool {
		return strings.Count(ra.out.String(), `screen=Logs`) > logs
	})
	ra.keys(t, "ctrl+2", "ctrl+n")
	ra.waitLog(t, "Ctrl+N in the message box to open the spawn dialog", `msg="spawn dialog opened"`)
	ra.keys(t, "Escape", "ctrl+q")
	ra.waitExit(t, "Ctrl+Q")
}

// TestRealWindowKeepsItsSize: the window opens at the size it had when the app quit.
func TestRealWindowKeepsItsSize(t *testing.T) {
	needDisplay(t)
	home := t.TempDir()
	ra := startApp(t, home)
	ra.screenshot(t, "the first frame", func(image.Image) bool { return true })
	ra.resize(t, 900, 620)
	// The app saves a size once it has held for sizeSettle (a drag resizes many times).
	time.Sleep(sizeSettle + 500*time.Millisecond)
	ra.quit(t)
	ra = startApp(t, home)
	ra.screenshot(t, "the first frame", func(image.Image) bool { return true })
	if w, h := ra.size(t); w != 900 || h != 620 {
		prefs, _ := os.ReadFile(filepath.Join(home, "config", "fyne", "io.github.beekeeper-hive.beekeeper", "preferences.json"))
		t.Errorf("the window opened at %d×%d, want 900×620 as it was left (preferences: %s)", w, h, prefs)
	}
	ra.quit(t)
}

func artifactsDir(tb testing.TB) string {
	dir := os.Getenv("BEEKEEPER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(tb), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("artifacts: %v", err)
	}
	return dir
}

// An instance with its own BEEKEEPER_HOME keeps its settings there too: the app reads
// the Queen mode seeded in $BEEKEEPER_HOME/config and starts its embedded Queen where
// those settings say, whatever the user's own settings are.
func TestRealWindowKeepsSettingsUnderBeekeeperHome(t *testing.T) {
	needDisplay(t)
	home := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	prefs := filepath.Join(home, "config", "fyne", "io.github.beekeeper-hive.beekeeper", "preferences.json")
	if err := os.MkdirAll(filepath.Dir(prefs), 0o700); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf(`{"queen_mode":"embedded","queen_embedded_addr":%q}`, addr)
	if err := os.WriteFile(prefs, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // "the user's own settings": must not be used

	ra := startApp(t, home)
	testenv.WaitFor(t, "the embedded Queen at the address the instance's settings name", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + wire.PathHealth)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ra.quit(t)
}

// TestRealWindowShowsAdoptedWorkersAndQuitsCleanly starts the built app under X with
// three workers left running by an earlier session, screenshots its window into
// artifacts/, quits it with SIGTERM (exit 0), and checks the workers outlived it.
func TestRealWindowShowsAdoptedWorkersAndQuitsCleanly(t *testing.T) {
	needDisplay(t)
	home := t.TempDir()
	ids := spawnDetached(t, home, 3)
	t.Cleanup(func() { stopAll(t, home) })

	ra := startApp(t, home)
	png := ra.screenshot(t, "the workers table", showsWorkersTable)
	shot := filepath.Join(artifactsDir(t), "desktop-workers-adopted.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("window mapped %v after exec; screenshot %s", ra.mapped, shot)
	ra.quit(t)
	if !strings.Contains(ra.out.String(), "workers=3") {
		t.Errorf("the app did not list the 3 re-adopted workers; output:\n%s", ra.out.String())
	}

	// Workers outlive the app (stop-on-quit is off by default) and keep their ids.
	h, err := hive.Open(hive.Options{StateDir: filepath.Join(home, "state"), WorkerBinary: testenv.Binary(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(false)
	for _, id := range ids {
		e, ok := h.Get(id)
		if !ok || e.State != hive.StateReady {
			t.Errorf("worker %s after the app quit: %+v (found %v), want ready", id, e.State, ok)
		}
	}
}

// BenchmarkIdleApp measures the built app under X with three workers listed: start to
// window on screen, then resident memory and CPU while idle, right after the start and
// again once every screen has been visited, against a bare Fyne window measured in the
// same run (the floor of any Fyne window on the machine: under Xvfb's software renderer
// it alone is ≈120 MB). Its goals are ratios to that window, with every screen visited:
// RSS ÷ bare ≤ 1.15 and CPU ≤ bare + 0.2 % of a core. Both executables are dropped from
// the page cache before they start, so both are read from disk as after a reboot: a file
// written moments before sits in large folios that are mapped whole, and the figure then
// moved by 0.05 with the app binary's age alone. Run with
// -run '^$' -bench IdleApp -benchtime 1x under xvfb-run.
func BenchmarkIdleApp(b *testing.B) {
	needDisplay(b)
	home := b.TempDir()
	spawnDetached(b, home, 3)
	b.Cleanup(func() { stopAll(b, home) })

	var mapped time.Duration
	var ra *runningApp
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dropFromPageCache(b, testenv.Binary(b))
		ra = startApp(b, home)
		ra.screenshot(b, "the workers table", showsWorkersTable)
		mapped += ra.mapped
		if i < b.N-1 {
			ra.quit(b)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(mapped.Milliseconds())/float64(b.N), "ms-to-window")

	startCPU, startRSS := idleFigures(b, ra.cmd.Process.Pid)
	b.ReportMetric(startCPU, "idle-cpu-%")
	b.ReportMetric(startRSS, "rss-MB")
	// Every screen once, then back to Workers, as a user looking around would.
	for _, s := range screenKeys {
		ra.keys(b, s.key)
		time.Sleep(time.Second) // the screen's first layout
	}
	ra.keys(b, "ctrl+1")
	cpuPct, rss := idleFigures(b, ra.cmd.Process.Pid)
	b.ReportMetric(cpuPct, "visited-idle-cpu-%")
	b.ReportMetric(rss, "visited-rss-MB")
	b.ReportMetric(exeRSSMB(b, ra.cmd.Process.Pid), "visited-exe-rss-MB")
	ra.quit(b)

	// The yardstick, on the same display right after: a Fyne window with one label.
	bare := startBareWindow(b)
	bareCPU, bareRSS := idleFigures(b, bare.Process.Pid)
	b.ReportMetric(bareCPU, "bare-window-idle-cpu-%")
	b.ReportMetric(bareRSS, "bare-window-rss-MB")
	b.ReportMetric(exeRSSMB(b, bare.Process.Pid), "bare-window-exe-rss-MB")
	// The goals.
	b.ReportMetric(rss/bareRSS, "visited-rss/bare")
	b.ReportMetric(cpuPct-bareCPU, "visited-cpu-over-bare-%")
	b.ReportMetric(startRSS/bareRSS, "rss/bare")
	b.ReportMetric(startCPU-bareCPU, "cpu-over-bare-%")
}

// idleFigures lets a window settle, then measures its CPU (% of one core) over an idle
// stretch and its resident memory (MB) at the end.
func idleFigures(tb testing.TB, pid int) (cpuPct, rssMB float64) {
	settle := time.NewTimer(3 * time.Second)
	<-settle.C
	cpu0, t0 := cpuTicks(tb, pid), time.Now()
	idle := time.NewTimer(10 * time.Second)
	<-idle.C
	cpu1, t1 := cpuTicks(tb, pid), time.Now()
	const clkTck = 100 // USER_HZ on Linux
	return float64(cpu1-cpu0) / clkTck / t1.Sub(t0).Seconds() * 100, float64(rssKB(tb, pid)) / 1024
}

// startBareWindow builds internal/barewindow with the app's tags, starts it and waits
// for its window.
func startBareWindow(tb testing.TB) *exec.Cmd {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "barewindow")
	build := exec.Command("go", "build", "-tags", testenv.BuildTags, "-o", bin, "./internal/barewindow")
	build.Dir = testenv.RepoRoot(tb)
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build the bare window: %v\n%s", err, out)
	}
	dropFromPageCache(tb, bin)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+tb.TempDir())
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testenv.WaitFor(tb, "the bare window on the display", 45*time.Second, func() bool {
		out, err := exec.Command("xdotool", "search", "--onlyvisible", "--pid", strconv.Itoa(cmd.Process.Pid)).Output()
		return err == nil && len(bytes.Fields(out)) > 0
	})
	return cmd
}

// cpuTicks is utime+stime of pid in clock ticks, from /proc/PID/stat.
func cpuTicks(tb testing.TB, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the ")" that ends the command name: state is field 3; utime 14, stime 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rssKB is VmRSS of pid, from /proc/PID/status.
func rssKB(tb testing.TB, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

// dropFromPageCache writes path back and evicts its pages from the page cache, so the
// next process to run it reads it from disk. Pages that running processes map (the
// workers run the app's executable) stay.
func dropFromPageCache(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	// Dirty pages are not evicted: a binary just built must reach the disk first.
	if err := f.Sync(); err != nil {
		tb.Fatalf("sync %s: %v", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		tb.Fatalf("evict %s from the page cache: %v", path, err)
	}
}

// exeRSSMB is how much of pid's executable is resident (MB), from /proc/PID/smaps.
func exeRSSMB(tb testing.TB, pid int) float64 {
	tb.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var kb int64
	testenv.Smaps(tb, pid, func(path, field string, n int64) {
		if path == exe && field == "Rss" {
			kb += n
		}
	})
	return float64(kb) / 1024
}
