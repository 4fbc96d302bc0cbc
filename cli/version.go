package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// runVersion is `beekeeper --version` (and `version`): the version, the commit it was
// built from, and the llama.cpp runtime workers would load.
func runVersion([]string) int {
	commit, dirty := "unknown", false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += " (modified)"
	}
	fmt.Printf("beekeeper %s\ncommit %s\n", wire.Version, commit)
	if dir, err := llamaruntime.Locate(""); err == nil {
		fmt.Printf("llama.cpp %s build %s (%s, chosen by %s)\n", llamaruntime.NpmVersion, llamaruntime.BackendOf(dir), dir, llamaruntime.SelectedBy())
	} else {
		fmt.Printf("llama.cpp runtime: not installed (`beekeeper runtime install`)\n")
	}
	return 0
}
