package ui

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// linkedRuntime is a new folder holding links to the test runtime's files: a second,
// working llama.cpp runtime folder whose path the worker's command line shows.
func linkedRuntime(t *testing.T) string {
	t.Helper()
	src := testenv.Runtime(t)
	dst := t.TempDir()
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Symlink(filepath.Join(src, f.Name()), filepath.Join(dst, f.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestSettingsApplyPortRangeAndRuntimeAtOnce saves a new port range and runtime folder
// on the Settings screen and spawns without restarting: the worker gets a port of the
// new range and the new runtime folder. A folder without the library is refused, names
// the field, and changes nothing.
func TestSettingsApplyPortRangeAndRuntimeAtOnce(t *testing.T) {
	tu := newTestUI(t)
	before := tu.core.Settings()

	// A folder without llama.cpp: refused, nothing changes.
	tu.onUI(func() {
		s := tu.settings
		s.llamaLib.SetText(t.TempDir())
		test.Tap(s.saveBt)
		if len(tu.dialogs) != 1 || !containsText(tu.win.Canvas().Overlays().Top(), "llama.cpp runtime folder") {
			t.Fatalf("a runtime folder without the library should show an error naming the field; %d dialogs", len(tu.dialogs))
		}
		tu.closeTopDialog()
	})
	if got := tu.core.Settings(); got.LlamaLib != before.LlamaLib || tu.hive.LlamaLib() != before.LlamaLib {
		t.Fatalf("a refused runtime folder was kept: settings %q, hive %q", got.LlamaLib, tu.hive.LlamaLib())
	}

	// A one-port range the app did not start with, and a second runtime folder.
	port := testenv.FreePort(t)
	lib := linkedRuntime(t)
	tu.onUI(func() {
		s := tu.settings
		s.portMin.SetText(strconv.Itoa(port))
		s.portMax.SetText(strconv.Itoa(port))
		s.llamaLib.SetText(lib)
		test.Tap(s.saveBt)
		if len(tu.dialogs) != 0 {
			t.Fatalf("valid settings showed %d dialogs", len(tu.dialogs))
		}
	})
	if min, max := tu.hive.PortRange(); min != port || max != port || tu.hive.LlamaLib() != lib {
		t.Fatalf("hive after save: ports %d-%d, lib %q; want %d-%d, %q", min, max, tu.hive.LlamaLib(), port, port, lib)
	}

	tu.spawnViaDialog(t, testenv.Model(t))
	tu.waitFor(t, "the row to reach ready", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	e, ok := tu.hive.Get(tu.onlyRow(t).id)
	if !ok || e.Port != port {
		t.Fatalf("worker port %d, want %d from the new range", e.Port, port)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cmdline, []byte(lib)) {
		t.Fatalf("worker command line %q does not use the new runtime folder %s", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), lib)
	}
}
