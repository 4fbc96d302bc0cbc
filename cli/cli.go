// Package cli owns the beekeeper command line: one subcommand per file, each a thin layer
// of flags over the packages that do the work.
package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
)

type command struct {
	name    string
	usage   string // one line: arguments
	summary string
	run     func(args []string) int
}

// commands is the whole command line; the desktop app runs when no subcommand is given.
func commands() []command {
	return []command{
		{"gui", "", "run the desktop app (the default)", runGUI},
		{"worker", "--model PATH --port N [flags]", "serve one GGUF model over an OpenAI-compatible API", runWorker},
		{"queen", "[--addr 127.0.0.1:7833] [--token T]", "run the mini Queen headless", runQueen},
		{"spawn", "--model PATH [--queen URL]", "start a worker and record it in the local registry", runSpawn},
		{"ps", "", "list the workers in the local registry", runPS},
		{"stop", "ID", "stop a worker", runStop},
		{"logs", "ID [-f]", "print a worker's log", runLogs},
		{"hive", "--queen URL [--models DIR]", "run this machine's hive headless: sync workers, take spawn orders", runHive},
		{"order", "--model NAME [--hive ID]", "ask the Queen for a worker serving a model, on a hive that has it", runOrder},
		{"runtime", "install|list|where [--backend B]", "install, list or locate the prebuilt llama.cpp builds", runRuntime},
		{"devices", "[--backend B] [--json]", "list the devices (CPU, GPUs) llama.cpp sees, with their memory", runDevices},
		{"version", "", "print the version, the commit and the llama.cpp runtime (also --version)", runVersion},
	}
}

// Run runs the subcommand named by args[0] and returns the process exit code.
func Run(args []string) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		return runVersion(args[1:])
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" {
		return runGUI(args)
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "beekeeper: unknown command %q\n\n", name)
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: beekeeper [command] [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %-40s %s\n", c.name, c.usage, c.summary)
	}
	fmt.Fprintln(w, "\nRun `beekeeper COMMAND -h` for a command's flags.")
}

// fail prints a one-line reason and returns code: the shape of every start-up failure.
func fail(code int, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "beekeeper: "+format+"\n", args...)
	return code
}
