package app

import (
	"fmt"

	"fyne.io/fyne/v2"
)

// The window's size is kept between runs with the settings, though the Settings screen
// does not show it. It is one key: Fyne writes a change at once, but a second one within
// 100 ms only later, which an app that is quitting does not wait for.
const keyWindowSize = "window_size" // "WIDTHxHEIGHT"

// DefaultWindowSize is the window of a first start.
var DefaultWindowSize = fyne.NewSize(1180, 720)

// minWindowSize is the smallest size restored: a smaller one (a window that was
// minimised, or a hand-edited file) would hide the screens.
var minWindowSize = fyne.NewSize(640, 400)

// WindowSize is the window size saved by the last run, or DefaultWindowSize.
func WindowSize(p fyne.Preferences) fyne.Size {
	var w, h float32
	if _, err := fmt.Sscanf(p.String(keyWindowSize), "%fx%f", &w, &h); err != nil ||
		w < minWindowSize.Width || h < minWindowSize.Height {
		return DefaultWindowSize
	}
	return fyne.NewSize(w, h)
}

// SaveWindowSize keeps s for the next run.
func SaveWindowSize(p fyne.Preferences, s fyne.Size) {
	if s.Width < minWindowSize.Width || s.Height < minWindowSize.Height {
		return
	}
	if v := fmt.Sprintf("%.0fx%.0f", s.Width, s.Height); v != p.String(keyWindowSize) {
		p.SetString(keyWindowSize, v)
	}
}
