package ui

import (
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// tapButton taps the button labelled text under o (a dialog), failing when there is none.
func tapButton(t *testing.T, o fyne.CanvasObject, text string) {
	t.Helper()
	for _, obj := range test.LaidOutObjects(o) {
		if b, ok := obj.(*widget.Button); ok && b.Text == text && b.Visible() {
			test.Tap(b)
			return
		}
	}
	t.Fatalf("no %q button", text)
}

// menuItem is the item of m labelled label.
func menuItem(t *testing.T, m *fyne.Menu, label string) *fyne.MenuItem {
	t.Helper()
	for _, it := range m.Items {
		if it.Label == label {
			return it
		}
	}
	t.Fatalf("menu has no %q", label)
	return nil
}

// TestStopTwiceNeverRemovesTheRow: a double click on Stop once removed the row, because
// Stop turned into Remove in the same place when the worker exited (issue 13). Stop now
// stays Stop, disabled once the worker is gone; Remove is in the row's menu and asks.
func TestStopTwiceNeverRemovesTheRow(t *testing.T) {
	tu := newTestUI(t)
	tu.spawnViaDialog(t, testenv.Model(t))
	tu.waitFor(t, "the row to reach ready", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	var c *cell
	tu.onUI(func() {
		c = tu.workers.createCell().(*cellWidget).c
		tu.workers.bindActions(c, tu.workers.rows[0])
		for _, b := range []*tipButton{c.stop, c.chat, c.more} {
			if b.tip == "" {
				t.Errorf("a row action without a tooltip: %+v", b.Icon.Name())
			}
		}
		test.Tap(c.stop)
	})
	tu.waitFor(t, "the row to show exited", 30*time.Second, func() bool {
		return tu.workers.rows[0].state == hive.StateExited
	})
	tu.onUI(func() {
		// The second click of the double click lands on the rebound row.
		tu.workers.bindActions(c, tu.workers.rows[0])
		if !c.stop.Disabled() || c.stop.Icon.Name() != theme.MediaStopIcon().Name() {
			t.Fatalf("Stop on an exited row: disabled %v, icon %s", c.stop.Disabled(), c.stop.Icon.Name())
		}
		test.Tap(c.stop)
	})
	time.Sleep(300 * time.Millisecond) // a removal, had the tap done one, runs in the background
	tu.onUI(func() {
		if len(tu.workers.rows) != 1 {
			t.Fatalf("a second click on Stop removed the row")
		}
		// Remove is in the row's menu, and asks.
		remove := menuItem(t, tu.workers.rowMenu(tu.workers.rows[0]), "Remove from the list…")
		if remove.Disabled {
			t.Fatal("Remove is disabled for an exited worker")
		}
		remove.Action()
		if len(tu.dialogs) != 1 || !containsText(tu.win.Canvas().Overlays().Top(), "Remove worker") {
			t.Fatalf("Remove did not ask; %d dialogs", len(tu.dialogs))
		}
	})
	time.Sleep(300 * time.Millisecond)
	tu.onUI(func() {
		if len(tu.workers.rows) != 1 {
			t.Fatal("the row went before the removal was confirmed")
		}
		tapButton(t, tu.win.Canvas().Overlays().Top(), "Remove")
	})
	tu.waitFor(t, "the row to go once confirmed", 10*time.Second, func() bool { return len(tu.workers.rows) == 0 })
}

// TestRowMenuOffersRemoveOnlyOnceStopped: a live worker's menu has Remove disabled.
func TestRowMenuOffersRemoveOnlyOnceStopped(t *testing.T) {
	s := &workersScreen{u: &UI{}}
	live := workerRow{id: "llm-x-1", state: hive.StateReady, live: true}
	if !menuItem(t, s.rowMenu(live), "Remove from the list…").Disabled {
		t.Error("Remove is enabled for a live worker")
	}
	starting := workerRow{id: "llm-x-1", state: hive.StateStarting, live: true}
	if !menuItem(t, s.rowMenu(starting), "Restart").Disabled {
		t.Error("Restart is enabled while the worker starts")
	}
}

// TestCrashedWorkerSaysHow: a crashed worker's state names its exit code or the signal
// (the hive records -1 for a death by signal; it read "crashed (exit -1)"), and says so
// when nobody could know; the reason the hive recorded is its tooltip.
func TestCrashedWorkerSaysHow(t *testing.T) {
	code := func(n int) *int { return &n }
	cases := []struct {
		name  string
		entry hive.Entry
		want  string
	}{
		{"exit code", hive.Entry{State: hive.StateCrashed, ExitCode: code(3), ExitReason: "model failed to load"}, "crashed (exit 3)"},
		{"signal", hive.Entry{State: hive.StateCrashed, ExitCode: code(-1), ExitReason: "killed by a signal"}, "crashed (signal)"},
		{"unknown", hive.Entry{State: hive.StateCrashed}, "crashed (code unknown)"},
		{"exited", hive.Entry{State: hive.StateExited, ExitCode: code(0), ExitReason: "exited normally"}, "exited (0)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.entry.ID = "llm-x-1"
			row := buildRows([]hive.Entry{tc.entry}, nil, time.Now())[0]
			if row.cells[colState] != tc.want {
				t.Errorf("state %q, want %q", row.cells[colState], tc.want)
			}
			if row.stateTip != tc.entry.ExitReason {
				t.Errorf("tooltip %q, want the reason %q", row.stateTip, tc.entry.ExitReason)
			}
		})
	}
}

// TestMenuShortcutsAndQuit: the window's menu carries Ctrl+N, Ctrl+L and Ctrl+Q (the menu's
// shortcuts reach the app even while a text field has focus; window_test.go checks that
// on a real window); Quit with no worker running quits at once, with one it asks first,
// saying what becomes of it.
func TestMenuShortcutsAndQuit(t *testing.T) {
	tu := newTestUI(t)
	quits := 0
	tu.onUI(func() { tu.quitApp = func() { quits++ } })
	shortcuts := map[string]*fyne.MenuItem{}
	tu.onUI(func() {
		for _, m := range tu.win.MainMenu().Items {
			for _, it := range m.Items {
				if it.Shortcut != nil {
					shortcuts[it.Shortcut.ShortcutName()] = it
				}
			}
		}
	})
	for _, want := range []string{"CustomDesktop:Control+N", "CustomDesktop:Control+L", "CustomDesktop:Control+Q"} {
		if shortcuts[want] == nil {
			t.Errorf("no menu item for %s; have %v", want, keysOf(shortcuts))
		}
	}
	quit := shortcuts["CustomDesktop:Control+Q"]
	if quit == nil || !quit.IsQuit {
		t.Fatal("Ctrl+Q is not the menu's Quit item")
	}
	tu.onUI(func() {
		shortcuts["CustomDesktop:Control+L"].Action()
		if tu.tabs.Selected() != tu.tabLogs {
			t.Errorf("the Logs item selected %q", tu.tabs.Selected().Text)
		}
		quit.Action()
		if quits != 1 || len(tu.dialogs) != 0 {
			t.Fatalf("Quit with no worker: %d quits, %d dialogs; want it to quit at once", quits, len(tu.dialogs))
		}
	})

	tu.spawnViaDialog(t, testenv.Model(t))
	tu.waitFor(t, "the worker to run", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	tu.onUI(func() {
		quit.Action()
		if quits != 1 || len(tu.dialogs) != 1 {
			t.Fatalf("Quit with a worker running: %d quits, %d dialogs; want a question", quits, len(tu.dialogs))
		}
		top := tu.win.Canvas().Overlays().Top()
		fate := "keep running" // as the "stop workers on quit" setting says
		if tu.core.Settings().StopWorkersOnQuit {
			fate = "Quitting stops them"
		}
		if !containsText(top, "1 worker is running") || !containsText(top, fate) {
			t.Fatalf("the question does not say what becomes of the running worker (%q)", fate)
		}
		tapButton(t, top, "Cancel")
		if quits != 1 {
			t.Fatal("Cancel quit")
		}
		quit.Action()
		tapButton(t, tu.win.Canvas().Overlays().Top(), "Quit")
		if quits != 2 {
			t.Fatal("Quit in the question did not quit")
		}
	})
}

// desktopMouse is a pointer event at the top left.
var desktopMouse desktop.MouseEvent

func keysOf(m map[string]*fyne.MenuItem) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTooltipShowsAfterARest: a row action's tooltip shows when the pointer rests on it
// and goes when it leaves; a cut label's says its whole text.
func TestTooltipShowsAfterARest(t *testing.T) {
	u, onUI := newLayoutUI(t)
	old := tipDelay
	tipDelay = 10 * time.Millisecond
	t.Cleanup(func() { tipDelay = old })
	var b *tipButton
	var l *tipLabel
	onUI(func() {
		b = newTipButton(u.tips, "", nil, "Stop this worker", nil)
		l = newTipLabel(u.tips, "llm-192.168.100.200-18080")
		l.Resize(fyne.NewSize(60, 30))
		b.MouseIn(&desktopMouse)
	})
	pollUI(t, onUI, "the tooltip", 2*time.Second, func() bool { return u.tips.shown() == "Stop this worker" })
	onUI(func() {
		b.MouseOut()
		if u.tips.shown() != "" {
			t.Fatal("the tooltip stayed after the pointer left")
		}
		l.MouseIn(&desktopMouse)
	})
	pollUI(t, onUI, "the cut label's tooltip", 2*time.Second, func() bool { return u.tips.shown() == "llm-192.168.100.200-18080" })
	onUI(func() { l.MouseOut() })
}
