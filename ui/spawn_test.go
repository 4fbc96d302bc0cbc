package ui

import (
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
