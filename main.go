// Command beekeeper is the desktop app (no subcommand), a llama.cpp worker
// (`beekeeper worker`), the mini Queen (`beekeeper queen`) and a headless hive.
package main

import (
	"os"

	"github.com/beekeeper-hive/beekeeper/cli"
	_ "github.com/beekeeper-hive/beekeeper/internal/localefix" // before Fyne's locale lookup
)

func main() { os.Exit(cli.Run(os.Args[1:])) }
