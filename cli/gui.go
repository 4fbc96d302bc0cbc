//go:build !headless

package cli

import (
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/assets"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/internal/memtrim"
	"github.com/beekeeper-hive/beekeeper/ui"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// AppID is the desktop app's id (FyneApp.toml); Fyne keeps its preferences under it.
const AppID = "io.github.beekeeper-hive.beekeeper"

// runGUI runs the desktop app until its window closes, Quit is chosen, or SIGTERM/SIGINT
// arrives; each ends it cleanly with exit 0. Workers keep running unless the "stop
// workers on quit" setting is on.
func runGUI(args []string) int {
	fs := flag.NewFlagSet("gui", flag.ContinueOnError)
	debugLog := fs.Bool("debug", false, "log debug lines too")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE` (diagnostics)")
	memProfile := fs.String("memprofile", "", "write a heap profile at exit to `FILE` (diagnostics)")
	if err := fs.Parse(args); err != nil {
		return wire.ExitBadArgs
	}
	if err := checkDisplay(); err != nil {
		return fail(1, "%v", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(wire.ExitBadArgs, "cpu profile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(1, "cpu profile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	level := slog.LevelInfo
	if *debugLog {
		level = slog.LevelDebug
	}
	ring := app.NewLogRing(2000)
	logger := app.NewLogger(ring, os.Stderr, level)
	slog.SetDefault(logger)

	if os.Getenv("GOGC") == "" {
		// An idle desktop app: a tighter heap goal costs little CPU and keeps the
		// resident size down (font tables dominate the live heap).
		debug.SetGCPercent(50)
	}
	if dir := dirs.Config(); dir != "" {
		// Fyne keeps preferences under the user config folder ($XDG_CONFIG_HOME on
		// Linux and the BSDs): an instance with its own BEEKEEPER_HOME gets its own.
		if err := os.Setenv("XDG_CONFIG_HOME", dir); err != nil {
			return fail(1, "settings folder: %v", err)
		}
	}
	a := fyneapp.NewWithID(AppID)
	a.SetIcon(assets.Icon)
	core, err := app.New(app.Config{Prefs: a.Preferences(), Log: ring, Logger: logger})
	if err != nil {
		return fail(1, "%v", err)
	}
	w, err := newWindow(a)
	if err != nil {
		core.Close()
		return fail(1, "%v", err)
	}
	w.Resize(app.WindowSize(a.Preferences()))
	w.SetMaster()
	u := ui.Create(a, w, core)

	var finishOnce sync.Once
	finish := func() {
		finishOnce.Do(func() {
			if *memProfile != "" {
				writeHeapProfile(*memProfile, logger)
			}
			u.Close()
			if err := core.Close(); err != nil {
				logger.Warn("closing the hive", "err", err)
			}
		})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			logger.Info("quitting on signal", "signal", s.String())
			fyne.Do(u.Quit)
		case <-u.Quitting():
		case <-done:
			return
		}
		grace := time.NewTimer(quitGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			logger.Warn("the window system did not finish quitting; closing without it", "waited", quitGrace)
			finish()
			os.Exit(0)
		}
	}()

	// Start-up garbage (font parsing, first layout) is freed by then; hand the pages
	// back to the OS so an idle app stays small.
	trim := time.AfterFunc(3*time.Second, memtrim.Now)
	w.ShowAndRun()
	trim.Stop()
	close(done)
	signal.Stop(sig)
	finish()
	return 0
}

// quitGrace is how long the window system gets to end its loop once quitting began.
// Fyne 2.7.1 can hang for ever there: an event handed to its main thread just as its
// loop ends waits on a queue nobody reads (seen once in 20 quits under load).
const quitGrace = 5 * time.Second

// newWindow opens the main window; a display GLFW cannot reach panics inside Fyne, and
// becomes an error here.
func newWindow(a fyne.App) (w fyne.Window, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = openWindowError(r)
		}
	}()
	return a.NewWindow("Beekeeper"), nil
}

func writeHeapProfile(path string, logger *slog.Logger) {
	f, err := os.Create(path)
	if err != nil {
		logger.Warn("heap profile", "err", err)
		return
	}
	defer f.Close()
	runtime.GC() // the profile shows the heap as of the last collection: make that now
	if err := pprof.WriteHeapProfile(f); err != nil {
		logger.Warn("heap profile", "err", err)
	}
}
