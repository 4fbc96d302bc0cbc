//go:build headless

package cli

import "github.com/beekeeper-hive/beekeeper/wire"

// runGUI is the desktop app's place in a build without it (-tags headless: no Fyne, no
// cgo), such as the macOS and Windows server builds.
func runGUI([]string) int {
	return fail(wire.ExitBadArgs, "this build has no desktop app: use the subcommands (`beekeeper help` lists them)")
}
