package models

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Find returns a GGUF file on this machine that workers would serve as name: the first
// of files (in order) that exists, else the first *.gguf in folder (by file name). It is
// how a hive answers a Queen's spawn order, which names a model, not a path.
func Find(name, folder string, files []string) (path string, ok bool) {
	if name == "" {
		return "", false
	}
	isModel := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular()
	}
	for _, f := range files {
		if wire.ModelName(f) == name && isModel(f) {
			return f, true
		}
	}
	if folder == "" {
		return "", false
	}
	ents, err := os.ReadDir(folder)
	if err != nil {
		return "", false
	}
	for _, e := range ents { // ReadDir sorts by name
		p := filepath.Join(folder, e.Name())
		if strings.EqualFold(filepath.Ext(e.Name()), ".gguf") && wire.ModelName(p) == name && isModel(p) {
			return p, true
		}
	}
	return "", false
}

// List returns the GGUF files on this machine that Find would resolve: files (in order)
// that exist, then the *.gguf files in folder, one path per model name (the first wins,
// as in Find).
func List(folder string, files []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		st, err := os.Stat(p)
		name := wire.ModelName(p)
		if err != nil || !st.Mode().IsRegular() || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, p)
	}
	for _, f := range files {
		add(f)
	}
	if folder == "" {
		return out
	}
	ents, err := os.ReadDir(folder)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if strings.EqualFold(filepath.Ext(e.Name()), ".gguf") {
			add(filepath.Join(folder, e.Name()))
		}
	}
	return out
}
