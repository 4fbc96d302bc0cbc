// Package dirs owns where Beekeeper keeps its files on this machine: state (the local
// registry, worker logs), data (chats, models) and cache (the llama.cpp runtime). On
// Linux and macOS they follow the XDG base directories; on Windows they live under
// %LOCALAPPDATA%\beekeeper (state, data, cache). BEEKEEPER_HOME moves state and data.
package dirs

import (
	"os"
	"path/filepath"
	"runtime"
)

// HomeEnv, when set, puts all of Beekeeper's state, data and settings under one folder
// (tests, or a second independent instance). The runtime cache stays shared: it is the
// same libraries.
const HomeEnv = "BEEKEEPER_HOME"

// windowsFolder is the folder under %LOCALAPPDATA%\beekeeper of each XDG variable's.
var windowsFolder = map[string]string{"XDG_STATE_HOME": "state", "XDG_DATA_HOME": "data", "XDG_CACHE_HOME": "cache"}

func xdg(env string, fallback ...string) string {
	if runtime.GOOS == "windows" {
		// %LOCALAPPDATA%: this machine's, not roaming (models and runtimes are large).
		local := os.Getenv("LOCALAPPDATA")
		if local == "" {
			local = os.TempDir()
		}
		return filepath.Join(local, "beekeeper", windowsFolder[env])
	}
	if v := os.Getenv(env); v != "" {
		return filepath.Join(v, "beekeeper")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(append([]string{home}, append(fallback, "beekeeper")...)...)
}

// State is where the local registry and worker logs live ($XDG_STATE_HOME/beekeeper;
// %LOCALAPPDATA%\beekeeper\state on Windows).
func State() string {
	if h := os.Getenv(HomeEnv); h != "" {
		return filepath.Join(h, "state")
	}
	return xdg("XDG_STATE_HOME", ".local", "state")
}

// Data is where conversations and downloaded models live ($XDG_DATA_HOME/beekeeper;
// %LOCALAPPDATA%\beekeeper\data on Windows).
func Data() string {
	if h := os.Getenv(HomeEnv); h != "" {
		return filepath.Join(h, "data")
	}
	return xdg("XDG_DATA_HOME", ".local", "share")
}

// Config is where a BEEKEEPER_HOME instance keeps its settings ("" without one: the
// desktop toolkit's usual place). The app points Fyne's preferences there, so a second
// instance does not share the first one's Queen mode and address.
func Config() string {
	if h := os.Getenv(HomeEnv); h != "" {
		return filepath.Join(h, "config")
	}
	return ""
}

// Models is the default models folder.
func Models() string { return filepath.Join(Data(), "models") }

// Cache is the shared cache ($XDG_CACHE_HOME/beekeeper; %LOCALAPPDATA%\beekeeper\cache
// on Windows); BEEKEEPER_HOME does not move it.
func Cache() string { return xdg("XDG_CACHE_HOME", ".cache") }
