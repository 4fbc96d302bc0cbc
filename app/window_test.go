package app

import (
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
)

// TestWindowSizeIsKept: the window opens at the size it had when the app last quit
// (issue 13); a first start, or a size too small to use, gets the default.
func TestWindowSizeIsKept(t *testing.T) {
	p := test.NewTempApp(t).Preferences()
	if got := WindowSize(p); got != DefaultWindowSize {
		t.Fatalf("first start: %v, want %v", got, DefaultWindowSize)
	}
	SaveWindowSize(p, fyne.NewSize(900, 600))
	if got := WindowSize(p); got != fyne.NewSize(900, 600) {
		t.Fatalf("after saving 900×600: %v", got)
	}
	SaveWindowSize(p, fyne.NewSize(1, 1)) // a minimised window is not kept
	if got := WindowSize(p); got != fyne.NewSize(900, 600) {
		t.Fatalf("after a minimised window: %v, want 900×600 kept", got)
	}
	p.SetString(keyWindowSize, "12x9000") // a hand-edited file
	if got := WindowSize(p); got != DefaultWindowSize {
		t.Fatalf("unusable saved size: %v, want the default", got)
	}
}
