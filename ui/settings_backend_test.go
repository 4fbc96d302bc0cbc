package ui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// TestSettingsBackendSelectListsBuildsAndSaves: the backend select lists auto and every
// build, those not installed with their install command; an installed one is saved, one
// not installed is refused with a dialog naming the field, and nothing changes.
func TestSettingsBackendSelectListsBuildsAndSaves(t *testing.T) {
	tu := newTestUI(t) // on the real runtime; the builds below live in a cache of their own
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	bs := llamaruntime.Builds()
	if len(bs) < 3 {
		t.Skip("this platform has no GPU builds to choose")
	}
	gpu, missing := bs[1], bs[2]
	if err := os.MkdirAll(gpu.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		llamaruntime.LibraryFile(): "lib",
		".beekeeper-installed":     llamaruntime.NpmScope + "/" + gpu.Packages[0] + "@" + llamaruntime.NpmVersion + "\n",
	} {
		if err := os.WriteFile(filepath.Join(gpu.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	index := func(backend string) int {
		for i, b := range tu.settings.backends {
			if b == backend {
				return i
			}
		}
		t.Fatalf("the backend select has no %s", backend)
		return -1
	}
	tu.onUI(func() {
		s := tu.settings
		s.fillBackends(tu.core.Settings().Backend)
		if s.backend.Selected != s.backend.Options[0] || !strings.HasPrefix(s.backend.Selected, "auto") {
			t.Fatalf("a first start selects auto, got %q", s.backend.Selected)
		}
		if got := s.backend.Options[index(gpu.Backend)]; got != gpu.Backend {
			t.Fatalf("an installed build is listed by its name alone, got %q", got)
		}
		if got := s.backend.Options[index(missing.Backend)]; !strings.Contains(got, "not installed") ||
			!strings.Contains(got, "beekeeper runtime install --backend "+missing.Backend) {
			t.Fatalf("a build not installed shows its install command, got %q", got)
		}

		s.llamaLib.SetText("") // a runtime folder would override the backend
		s.backend.SetSelectedIndex(index(gpu.Backend))
		test.Tap(s.saveBt)
		if len(tu.dialogs) != 0 {
			t.Fatalf("an installed backend showed %d dialogs", len(tu.dialogs))
		}
	})
	if got := tu.core.Settings(); got.Backend != gpu.Backend || got.RuntimeDir() != gpu.Dir {
		t.Fatalf("after save: backend %q, runtime %q; want %q in %s", got.Backend, got.RuntimeDir(), gpu.Backend, gpu.Dir)
	}

	tu.onUI(func() {
		s := tu.settings
		s.backend.SetSelectedIndex(index(missing.Backend))
		test.Tap(s.saveBt)
		if len(tu.dialogs) != 1 || !containsText(tu.win.Canvas().Overlays().Top(), "llama.cpp backend") {
			t.Fatalf("a build not installed should show an error naming the field; %d dialogs", len(tu.dialogs))
		}
		tu.closeTopDialog()
	})
	if got := tu.core.Settings().Backend; got != gpu.Backend {
		t.Fatalf("a refused backend was kept: %q", got)
	}
}
