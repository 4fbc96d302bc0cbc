// Command beekeeper is the desktop app (no subcommand), a llama.cpp worker
// (`beekeeper worker`), the mini Queen (`beekeeper queen`) and a headless hive.
package main

import (
	"os"

	"github.com/beekeeper-hive/beekeeper/cli"
	_ "github.com/beekeeper-hive/beekeeper/internal/localefix" // before Fyne's locale lookup
	"github.com/beekeeper-hive/beekeeper/spawner"
)

func main() {
	spawner.RunHelper(os.Args[1:]) // Windows: a stop's console-signal helper; returns at once otherwise
	os.Exit(cli.Run(os.Args[1:]))
}
