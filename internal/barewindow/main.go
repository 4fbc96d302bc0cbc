// Command barewindow is the desktop benchmark's yardstick: the cheapest Fyne window (one
// label, the app's size), built with the same Fyne and tags as the app, so that
// BenchmarkIdleApp can report what any Fyne window costs on the same display.
package main

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"

	_ "github.com/beekeeper-hive/beekeeper/internal/localefix" // as the app: quiet on C.UTF-8
)

func main() {
	a := app.NewWithID("io.github.beekeeper-hive.barewindow")
	w := a.NewWindow("Bare Fyne window")
	w.SetContent(widget.NewLabel("hello"))
	w.Resize(fyne.NewSize(1180, 720)) // the app's window size
	w.ShowAndRun()
}
