package ui

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/models"
)

func TestExpandPath(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home folder")
	}
	wd, _ := os.Getwd()
	cases := []struct {
		text     string
		relative bool
		want     string // "" = not a path
	}{
		{"~/models/a.gguf", false, filepath.Join(home, "models", "a.gguf")},
		{"  ~/a.gguf\n", false, filepath.Join(home, "a.gguf")},
		{"~", false, home},
		{`'/tmp/with space/a.gguf'`, false, "/tmp/with space/a.gguf"},
		{`"/tmp/a.gguf"`, false, "/tmp/a.gguf"},
		{"file:///tmp/with%20space/a.gguf", false, "/tmp/with space/a.gguf"},
		{"/tmp/../tmp/a.gguf", false, "/tmp/a.gguf"},
		{"https://huggingface.co/x/resolve/main/a.gguf", false, ""},
		{"https://huggingface.co/x/resolve/main/a.gguf", true, ""},
		{"models/a.gguf", false, ""},
		{"models/a.gguf", true, filepath.Join(wd, "models", "a.gguf")},
		{"", true, ""},
		{`""`, true, ""},
	}
	for _, tc := range cases {
		got, ok := expandPath(tc.text, tc.relative)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("expandPath(%q, %v) = %q, %v; want %q", tc.text, tc.relative, got, ok, tc.want)
		}
	}
}

// TestTypedModelPaths (issue 13 item 6, "a typed path works in the file dialog"): Fyne's
// open dialog has no path field, so a path typed or pasted into the Models screen's URL
// box, with ~ or the quotes a file manager adds, joins the library, and a missing file,
// a folder or a file that is not GGUF is an error dialog that says which and what to do,
// the text left in the box to fix. The spawn dialog's model field takes the same paths,
// and a model spawned from a typed path joins the library too.
func TestTypedModelPaths(t *testing.T) {
	tu := newTestUI(t)

	// The spawn dialog, on a pasted path in quotes: the worker starts, the file joins
	// the library.
	pasted := filepath.Join(t.TempDir(), "pasted.gguf")
	copyModel(t, filepath.Dir(pasted), filepath.Base(pasted))
	tu.spawnViaDialog(t, `'`+pasted+`'`)
	tu.waitFor(t, "the worker on the pasted path to be ready", 60*time.Second, func() bool {
		return len(tu.workers.rows) == 1 && tu.workers.rows[0].state == hive.StateReady
	})
	if lib, err := tu.openModelLibrary(); err != nil || !slices.ContainsFunc(lib.List(), func(i models.Info) bool { return i.Path == pasted }) {
		t.Fatalf("the spawned model is not in the library (%v)", err)
	}

	// ~ is the home folder (a test one from here on).
	home := t.TempDir()
	t.Setenv("HOME", home)
	copyModel(t, filepath.Join(home, "Downloads"), "typed.gguf")
	if err := os.WriteFile(filepath.Join(home, "notes.gguf"), []byte("not a model\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	typed := filepath.Join(home, "Downloads", "typed.gguf")

	// The spawn dialog reads ~ and names a missing file with its whole path.
	tu.onUI(func() { tu.openSpawnDialog("~/Downloads/typed.gguf") })
	if req := tu.request(t); req.ModelPath != typed {
		t.Errorf("the spawn dialog read ~/Downloads/typed.gguf as %q", req.ModelPath)
	}
	tu.onUI(func() {
		tu.spawn.modelSel.SetText("~/nothing-here.gguf")
		_, err := tu.spawn.request()
		var fe *formError
		if !errors.As(err, &fe) || fe.field != "Model" || !strings.Contains(fe.problem, "no file at "+filepath.Join(home, "nothing-here.gguf")) {
			t.Errorf("a missing typed file: %v", err)
		}
		tu.spawn.close()
	})

	v := tu.modelsScreen()
	tu.onUI(func() { tu.tabs.Select(tu.tabModels) })
	tu.waitFor(t, "the Models screen's listing", 10*time.Second, func() bool { return v.loaded })
	for _, tc := range []struct{ text, title, says string }{
		{"~/nothing-here.gguf", "No such file", "there is no file at " + filepath.Join(home, "nothing-here.gguf")},
		{"~/notes.gguf", "Not a model file", filepath.Join(home, "notes.gguf") + " is not a GGUF model file"},
		{"~/Downloads", "That is a folder", filepath.Join(home, "Downloads") + " is a folder"},
	} {
		tu.onUI(func() {
			v.url.SetText(tc.text)
			test.Tap(v.url)
			v.startDownload()
			top := tu.win.Canvas().Overlays().Top()
			if len(tu.dialogs) != 1 || !containsText(top, tc.title) || !containsText(top, tc.says) || !containsText(top, "How to fix") {
				t.Errorf("%q: %d dialogs; want one titled %q saying %q and the fix", tc.text, len(tu.dialogs), tc.title, tc.says)
			}
			tu.closeTopDialog()
			if v.url.Text != tc.text || len(v.rows) != 0 {
				t.Errorf("%q: the box reads %q and %d downloads started", tc.text, v.url.Text, len(v.rows))
			}
		})
	}
	tu.onUI(func() {
		v.url.SetText(`"~/Downloads/typed.gguf"`)
		v.startDownload()
		if len(tu.dialogs) != 0 || v.url.Text != "" || len(v.rows) != 0 {
			t.Errorf("a good typed path: %d dialogs, box %q, %d downloads", len(tu.dialogs), v.url.Text, len(v.rows))
		}
	})
	tu.waitFor(t, "the typed path listed", 10*time.Second, func() bool {
		return slices.ContainsFunc(v.infos, func(i models.Info) bool { return i.Path == typed })
	})
	tu.onUI(func() {
		for _, i := range v.infos {
			if strings.HasSuffix(i.Path, "notes.gguf") || strings.HasSuffix(i.Path, "nothing-here.gguf") {
				t.Errorf("a refused path joined the library: %s", i.Path)
			}
		}
	})
}
