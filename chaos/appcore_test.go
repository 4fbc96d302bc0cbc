package chaos

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The desktop app's core as a faulted process: the soak runs its own test binary with
// appCoreArg first, and TestMain makes it the core of the desktop app (package app,
// without a window) instead of a test run. Nothing of it is in the product's CLI, and
// under `go test -race` the core runs with the race detector too.

// appCoreArg, as the first argument, makes the test binary the app core.
const appCoreArg = "-chaos.appcore"

// appReady starts the line the app core prints when it is ready; the soak waits for it.
const appReady = "chaos appcore ready"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == appCoreArg {
		os.Exit(appCore(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// appCore runs app.New with preferences kept in a file of $BEEKEEPER_HOME/config, as a
// user's app keeps them between runs. A first start (no saved Queen mode) does what a
// user does in the window: sets the Queen in remote mode (Queen screen) and spawns one
// worker (the "Spawn worker" dialog: Hive().Spawn, then the model joins the recent ones).
// A restart only opens: app.New brings the saved Queen back and the hive re-adopts the
// workers that outlived the last run. It runs until SIGKILLed (or closes on SIGTERM).
func appCore(args []string) int {
	fl := flag.NewFlagSet("appcore", flag.ContinueOnError)
	queenURL := fl.String("queen", "", "the Queen's URL, typed in the Queen screen on the first start")
	token := fl.String("token", "", "the Queen's token, typed with it")
	model := fl.String("model", "", "the model the first start spawns a worker on")
	workerBin := fl.String("worker-binary", "", "the beekeeper binary run as `worker`")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "chaos appcore: "+format+"\n", args...)
		return 1
	}
	prefs, err := filePreferences(filepath.Join(dirs.Config(), "preferences.gob"))
	if err != nil {
		return fail("preferences: %v", err)
	}
	ring := app.NewLogRing(2000)
	a, err := app.New(app.Config{Prefs: prefs, WorkerBinary: *workerBin, Log: ring,
		Logger: app.NewLogger(ring, os.Stdout, slog.LevelInfo)})
	if err != nil {
		return fail("%v", err)
	}
	how := "restored from the saved settings"
	if s := a.Settings(); s.QueenMode != app.QueenRemote {
		how = "set (first start)"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := a.SetQueen(ctx, app.QueenRemote, *queenURL, *token); err != nil {
			return fail("set the Queen: %v", err)
		}
		e, err := a.Hive().Spawn(ctx, hive.SpawnRequest{ModelPath: *model, WorkerType: wire.DefaultWorkerType, RegisterWithQueen: true}, nil)
		if err != nil {
			return fail("spawn %s: %v", *model, err)
		}
		a.Logger().Info("worker spawned", "id", e.ID, "port", e.Port)
		a.RememberModel(*model)
	} else if s.RemoteURL != *queenURL || s.RemoteToken != *token {
		return fail("saved Queen %q (token saved: %t) is not the one given", s.RemoteURL, s.RemoteToken != "")
	}
	st := a.QueenState()
	fmt.Printf("%s: queen %s %s, %d workers\n", appReady, st.URL, how, len(a.Hive().List()))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	if err := a.Close(); err != nil {
		return fail("close: %v", err)
	}
	return 0
}

// filePreferences is Fyne's in-memory preferences (the test app's) saved to path on
// every change and loaded from it at the start: a Fyne app's file-backed preferences
// without its window driver. A save is synchronous (Fyne's own waits up to 100 ms), and
// goes through a temporary file renamed over path, so a SIGKILL leaves the old file or
// the new one.
func filePreferences(path string) (fyne.Preferences, error) {
	p := test.NewApp().Preferences()
	vals, ok := p.(interface {
		ReadValues(func(map[string]any))
		WriteValues(func(map[string]any))
	})
	if !ok {
		return nil, fmt.Errorf("the test app's preferences (%T) cannot be read whole", p)
	}
	switch b, err := os.ReadFile(path); {
	case err == nil:
		var saved map[string]any
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&saved); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		vals.WriteValues(func(m map[string]any) { maps.Copy(m, saved) })
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	p.AddChangeListener(func() {
		mu.Lock()
		defer mu.Unlock()
		var buf bytes.Buffer
		var err error
		vals.ReadValues(func(m map[string]any) { err = gob.NewEncoder(&buf).Encode(m) })
		if err == nil {
			tmp := path + ".tmp"
			if err = os.WriteFile(tmp, buf.Bytes(), 0o600); err == nil {
				err = os.Rename(tmp, path)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos appcore: save preferences: %v\n", err)
		}
	})
	return p, nil
}
