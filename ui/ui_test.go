package ui

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// testUI is a UI on the Fyne test driver, on a real hive whose workers are real
// `beekeeper worker` processes. The test driver runs fyne.Do inline on the calling
// goroutine, so the UI's hops and the test's own widget pokes share one lock: that lock
// is the "UI thread" here.
type testUI struct {
	*UI
	mu   sync.Mutex
	core *app.App
}

func (tu *testUI) onUI(f func()) {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	f()
}

func newTestUI(t *testing.T) *testUI {
	t.Helper()
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	tu := openTestUI(t, home, true) // the test's workers end with the test
	t.Cleanup(tu.shutdown(t))
	return tu
}

// openTestUI opens the app core and the UI on the state in home, as one start of the
// app does. The caller ends it with the func shutdown returns.
func openTestUI(t *testing.T, home string, stopOnQuit bool) *testUI {
	t.Helper()
	a := test.NewTempApp(t)
	port := testenv.FreePort(t)
	s := app.DefaultSettings()
	s.PortMin, s.PortMax = port, port+10 // never the defaults: other tests run alongside
	s.StopWorkersOnQuit = stopOnQuit
	s.LlamaLib = testenv.Runtime(t)
	s.Save(a.Preferences())

	core, err := app.New(app.Config{
		Prefs:         a.Preferences(),
		StateDir:      filepath.Join(home, "state"),
		WorkerBinary:  testenv.Binary(t),
		StatsInterval: 250 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	w := a.NewWindow("Beekeeper")
	w.Resize(fyne.NewSize(1180, 720))
	tu := &testUI{core: core}
	tu.mu.Lock()
	tu.UI = newUI(a, w, core, tu.onUI)
	tu.start()
	tu.mu.Unlock()
	return tu
}

// shutdown returns what quitting the app does: the UI's goroutines end, then the core
// closes (stopping workers only when the setting says so). Calling it twice is harmless.
func (tu *testUI) shutdown(t *testing.T) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			tu.Close()
			if err := tu.core.Close(); err != nil {
				t.Errorf("core.Close: %v", err)
			}
		})
	}
}

// waitFor polls cond on the UI thread until it holds or the deadline passes.
func (tu *testUI) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	pollUI(t, tu.onUI, what, timeout, cond)
}

// pollUI polls cond through onUI (so it may read widgets) until it holds or the deadline
// passes.
func pollUI(t testing.TB, onUI func(func()), what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		onUI(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

// spawnViaDialog opens the spawn dialog, types modelPath and taps Spawn.
func (tu *testUI) spawnViaDialog(t *testing.T, modelPath string) {
	t.Helper()
	tu.onUI(func() {
		tu.openSpawnDialog("")
		f := tu.spawn
		f.modelSel.SetText("")
		test.Type(f.modelSel, modelPath)
		f.ctxSize.SetText("256")
		f.threads.SetText("1")
		test.Tap(f.submit)
	})
}

func (tu *testUI) onlyRow(t *testing.T) workerRow {
	t.Helper()
	var rows []workerRow
	tu.onUI(func() { rows = append(rows, tu.workers.rows...) })
	if len(rows) != 1 {
		t.Fatalf("workers table has %d rows, want 1", len(rows))
	}
	return rows[0]
}

func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func TestSpawnFromDialogReachesReadyThenStopEndsProcess(t *testing.T) {
	tu := newTestUI(t)
	model := testenv.Model(t)

	tu.onUI(func() {
		if len(tu.workers.rows) != 0 || tu.workers.body.Objects[0] != tu.workers.empty {
			t.Fatalf("a fresh app should show the empty state")
		}
	})
	tu.spawnViaDialog(t, model)
	tu.waitFor(t, "the row to reach ready", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	row := tu.onlyRow(t)
	e, ok := tu.hive.Get(row.id)
	if !ok {
		t.Fatalf("worker %s is not in the hive", row.id)
	}
	if row.cells[colModel] != "stories260K" || row.cells[colState] != "ready" || row.cells[colPID] != strconv.Itoa(e.PID) {
		t.Fatalf("row cells = %q", row.cells)
	}
	if !processAlive(e.PID) {
		t.Fatalf("worker pid %d is not running", e.PID)
	}
	resp, err := http.Get(e.URL() + "/health")
	if err != nil {
		t.Fatalf("worker health: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("worker health = %d", resp.StatusCode)
	}
	tu.onUI(func() {
		if tu.workers.body.Objects[0] != tu.workers.tableUI {
			t.Fatalf("with a worker listed the table should replace the empty state")
		}
		if len(tu.dialogs) != 0 {
			t.Fatalf("the spawn dialog should close on success; %d dialogs open", len(tu.dialogs))
		}
	})
	tu.waitFor(t, "the row's CPU and memory", 10*time.Second, func() bool {
		r := tu.workers.rows[0]
		return r.cells[colMem] != "—" && r.cells[colCPU] != "—"
	})

	// Stop with the row's own stop button.
	tu.onUI(func() {
		c := tu.workers.createCell().(*cellWidget).c
		tu.workers.bindActions(c, tu.workers.rows[0])
		test.Tap(c.stop)
	})
	tu.waitFor(t, "the row to show exited", 30*time.Second, func() bool {
		r := tu.workers.rows[0]
		return r.state == hive.StateExited && !r.live
	})
	if row := tu.onlyRow(t); row.cells[colPID] != "—" {
		t.Fatalf("an exited row shows pid %q", row.cells[colPID])
	}
	deadline := time.Now().Add(10 * time.Second)
	for processAlive(e.PID) {
		if time.Now().After(deadline) {
			t.Fatalf("worker pid %d still runs after stop", e.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueenModeEmbeddedBringsRowOnline(t *testing.T) {
	tu := newTestUI(t)
	tu.spawnViaDialog(t, testenv.Model(t))
	tu.waitFor(t, "the row to reach ready", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	if row := tu.onlyRow(t); row.cells[colQueen] != "off" {
		t.Fatalf("Queenless row shows Queen state %q, want off", row.cells[colQueen])
	}

	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	switched := time.Now()
	tu.onUI(func() {
		tu.queen.addr.SetText(addr)
		tu.queen.mode.SetSelected(modeLabels[1]) // Embedded dev Queen
	})
	tu.waitFor(t, "the row's Queen state to reach online", 20*time.Second, func() bool {
		return tu.workers.rows[0].cells[colQueen] == "online"
	})
	online := time.Since(switched)
	id := tu.onlyRow(t).id
	tu.waitFor(t, "the Queen screen to list the worker from its event stream", 10*time.Second, func() bool {
		st := tu.queen.state
		return st.Embedded && st.Connected && len(tu.queen.workers) == 1 && tu.queen.workers[0].WorkerID == id
	})
	t.Logf("mode switched to embedded: row online after %v", online)
	tu.onUI(func() {
		// The status says which name the Queen's spawn orders reach this machine by.
		if want := "takes spawn orders here as " + hive.DefaultHiveID(); !strings.Contains(tu.queen.status.Text, want) {
			t.Errorf("Queen status %q lacks %q", tu.queen.status.Text, want)
		}
	})
	if st := tu.core.Settings(); st.QueenMode != app.QueenEmbedded || st.EmbeddedAddr != addr {
		t.Fatalf("queen mode not persisted: %+v", st)
	}

	// The Queen screen, while shown, asks the Queen for its workers' heartbeat figures:
	// the worker's device and KV cache appear in its row.
	tu.onUI(func() { tu.tabs.Select(tu.tabQueen) })
	tu.waitFor(t, "the worker's device and KV cache on the Queen screen", 20*time.Second, func() bool {
		w := tu.queen.withLoad(tu.queen.workers[0])
		dev, _, _ := queenWorkerCell(w, qcolDevice)
		kv, _, _ := queenWorkerCell(w, qcolKV)
		return dev != "—" && strings.Contains(kv, " / ")
	})
	tu.onUI(func() { tu.tabs.Select(tu.tabWorkers) })

	// Back to Queenless: the embedded Queen stops, the row says off.
	tu.onUI(func() { tu.queen.mode.SetSelected(modeLabels[0]) })
	tu.waitFor(t, "the row's Queen state to read off", 20*time.Second, func() bool {
		return tu.workers.rows[0].cells[colQueen] == "off" && !tu.queen.state.Embedded
	})
}

func TestSpawnOfNonGGUFShowsErrorDialog(t *testing.T) {
	tu := newTestUI(t)
	bad := filepath.Join(t.TempDir(), "notes.gguf")
	if err := os.WriteFile(bad, []byte("this is not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tu.spawnViaDialog(t, bad)
	tu.waitFor(t, "the error dialog", 30*time.Second, func() bool {
		return len(tu.dialogs) == 2 // the spawn dialog and the error on top
	})
	tu.onUI(func() {
		top := tu.win.Canvas().Overlays().Top()
		if !containsText(top, "The model did not load") {
			t.Fatalf("error dialog does not name the problem")
		}
		if !containsText(top, "GGUF") {
			t.Fatalf("error dialog does not name the fix")
		}
		if len(tu.workers.rows) != 0 {
			t.Fatalf("a failed spawn left %d rows", len(tu.workers.rows))
		}
		// Escape closes the error, then the spawn dialog.
		tu.closeTopDialog()
		tu.closeTopDialog()
		if len(tu.dialogs) != 0 {
			t.Fatalf("%d dialogs still open after two Escapes", len(tu.dialogs))
		}
	})
}

func TestSpawnFormNamesTheBadField(t *testing.T) {
	tu := newTestUI(t)
	model := testenv.Model(t)
	cases := []struct {
		name, model, ctx, port string
		wantField              string
	}{
		{"no model", "", "", "", "Model"},
		{"missing file", "/nonexistent/x.gguf", "", "", "Model"},
		{"context not a number", model, "lots", "", "Context size"},
		{"port out of range", model, "", "70000", "Port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			tu.onUI(func() {
				tu.openSpawnDialog("")
				f := tu.spawn
				f.modelSel.SetText(tc.model)
				f.ctxSize.SetText(tc.ctx)
				f.port.SetText(tc.port)
				_, err = f.request()
				f.dlg.Hide()
			})
			var fe *formError
			if !errors.As(err, &fe) || fe.field != tc.wantField {
				t.Fatalf("request() error = %v, want a formError on %s", err, tc.wantField)
			}
		})
	}
}

// containsText reports whether any label or text under o shows text (substring).
func containsText(o fyne.CanvasObject, text string) bool {
	for _, obj := range test.LaidOutObjects(o) {
		switch v := obj.(type) {
		case *widget.Label:
			if contains(v.Text, text) {
				return true
			}
		case *canvas.Text:
			if contains(v.Text, text) {
				return true
			}
		case *widget.RichText:
			if contains(v.String(), text) {
				return true
			}
		}
	}
	return false
}

func contains(s, sub string) bool {
	return strings.Contains(s, sub)
}

func TestSpawnDialogKeys(t *testing.T) {
	tu := newTestUI(t)
	tu.onUI(func() {
		// Ctrl+N opens the dialog; Escape inside a focused entry closes it.
		sc := tu.win.Canvas().(fyne.Shortcutable)
		sc.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyN, Modifier: fyne.KeyModifierShortcutDefault})
		if len(tu.dialogs) != 1 {
			t.Fatalf("%d dialogs after Ctrl+N, want 1", len(tu.dialogs))
		}
		tu.spawn.port.TypedKey(&fyne.KeyEvent{Name: fyne.KeyEscape})
		if len(tu.dialogs) != 0 {
			t.Fatalf("Escape in an entry left %d dialogs", len(tu.dialogs))
		}
		// Enter submits: with no model that is the form error, on top of the dialog.
		tu.openSpawnDialog("")
		tu.spawn.modelSel.SetText("")
		tu.spawn.port.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
		if len(tu.dialogs) != 2 || !containsText(tu.win.Canvas().Overlays().Top(), "Check the form") {
			t.Fatalf("Enter with no model should show the form error; %d dialogs", len(tu.dialogs))
		}
		tu.closeTopDialog()
		tu.closeTopDialog()
		// Ctrl+L opens the Logs tab.
		sc.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyL, Modifier: fyne.KeyModifierShortcutDefault})
		if tu.tabs.Selected() != tu.tabLogs {
			t.Fatalf("Ctrl+L selected %q", tu.tabs.Selected().Text)
		}
	})
}
