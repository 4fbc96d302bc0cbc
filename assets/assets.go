// Package assets owns the app's bundled resources: the icon, embedded so the binary
// carries it. gen_icon.go draws icon.png (`go run assets/gen_icon.go`).
package assets

import (
	_ "embed"

	"fyne.io/fyne/v2"
)

//go:embed icon.png
var iconPNG []byte

// Icon is the Beekeeper icon (512x512 PNG): window, tray and package icon.
var Icon = fyne.NewStaticResource("icon.png", iconPNG)
