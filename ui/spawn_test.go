package ui

import (
	"os"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// The spawn dialog once offered a "Register with the Queen" checkbox that did nothing:
// while a Queen is set every live worker is registered anyway. It must not promise an
// opt-out it cannot keep, and its request asks for the immediate registration.
func TestSpawnDialogOffersNoQueenOptOut(t *testing.T) {
	tu := newTestUI(t)
	tu.onUI(func() {
		tu.openSpawnDialog("")
		f := tu.spawn
		var checks []string
		var walk func(o fyne.CanvasObject)
		walk = func(o fyne.CanvasObject) {
			switch w := o.(type) {
			case *widget.Check:
				checks = append(checks, w.Text)
			case *fyne.Container:
				for _, c := range w.Objects {
					walk(c)
				}
			case fyne.Widget:
				for _, c := range test.WidgetRenderer(w).Objects() {
					walk(c)
				}
			}
		}
		top := tu.win.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("spawn dialog not shown")
		}
		walk(top)
		if len(checks) != 0 {
			t.Errorf("spawn dialog has checkboxes %q; none of them can opt a worker out of the Queen", checks)
		}
		f.modelSel.SetText(testenv.Model(t))
		req, err := f.request()
		if err != nil {
			t.Fatal(err)
		}
		if !req.RegisterWithQueen {
			t.Error("spawn request does not register with the Queen at once")
		}
		f.close()
	})
}

// With a model in the models folder and none used yet, the spawn dialog opens with that
// model filled in, so spawning it is Ctrl+N then Enter.
func TestSpawnDialogPrefillsTheModelsFolder(t *testing.T) {
	tu := newTestUI(t)
	folder := t.TempDir()
	model := folder + "/stories260K.gguf"
	if err := copyFile(testenv.Model(t), model); err != nil {
		t.Fatal(err)
	}
	s := tu.core.Settings()
	s.ModelsFolder, s.RecentModels = folder, nil
	if err := tu.core.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	tu.onUI(func() {
		tu.openSpawnDialog("")
		if got := tu.spawn.modelSel.Text; got != model {
			t.Fatalf("model field %q, want the models folder's %q", got, model)
		}
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
