package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// backendBuilds gives the test its own runtime cache and returns this platform's builds
// there; it skips where there is no GPU build to choose.
func backendBuilds(t *testing.T) []llamaruntime.Build {
	t.Helper()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, v := range []string{llamaruntime.EnvLib, "YZMA_LIB", llamaruntime.EnvBackend} {
		t.Setenv(v, "")
	}
	bs := llamaruntime.Builds()
	if len(bs) < 3 {
		t.Skip("this platform has no GPU builds to choose")
	}
	return bs
}

// fakeInstall makes a build's cache folder look installed: the library and the record a
// finished install leaves.
func fakeInstall(t *testing.T, b llamaruntime.Build) {
	t.Helper()
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		llamaruntime.LibraryFile(): "lib",
		".beekeeper-installed":     llamaruntime.NpmScope + "/" + b.Packages[0] + "@" + llamaruntime.NpmVersion + "\n",
	} {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackendSettingPersistsAndMapsToItsFolder: the backend choice survives a restart,
// and RuntimeDir (what the hive is handed) is the chosen build's folder, a runtime
// folder overriding it, and "" for auto.
func TestBackendSettingPersistsAndMapsToItsFolder(t *testing.T) {
	gpu := backendBuilds(t)[1]
	fakeInstall(t, gpu)
	a := test.NewTempApp(t)
	s := DefaultSettings()
	s.Backend = gpu.Backend
	if err := s.Validate(); err != nil {
		t.Fatalf("an installed backend: %v", err)
	}
	s.Save(a.Preferences())
	got := LoadSettings(a.Preferences())
	if got.Backend != gpu.Backend {
		t.Fatalf("backend after a restart: %q, want %q", got.Backend, gpu.Backend)
	}
	if dir := got.RuntimeDir(); dir != gpu.Dir {
		t.Fatalf("RuntimeDir() = %q, want the %s folder %s", dir, gpu.Backend, gpu.Dir)
	}
	got.LlamaLib = "/opt/llama/bin"
	if dir := got.RuntimeDir(); dir != got.LlamaLib {
		t.Fatalf("a runtime folder overrides the backend: RuntimeDir() = %q", dir)
	}
	if dir := DefaultSettings().RuntimeDir(); dir != "" {
		t.Fatalf("auto hands no folder (the worker locates it): %q", dir)
	}
}

// TestBackendSettingNotInstalledNamesTheFix: a build that is not installed is refused on
// the backend field with its install command, unless a runtime folder overrides it.
func TestBackendSettingNotInstalledNamesTheFix(t *testing.T) {
	missing := backendBuilds(t)[2]
	s := DefaultSettings()
	s.ModelsFolder = "/m"
	s.Backend = missing.Backend
	var se *SettingsError
	err := s.Validate()
	if !errors.As(err, &se) || se.Field != "llama.cpp backend" ||
		!strings.Contains(err.Error(), "beekeeper runtime install --backend "+missing.Backend) {
		t.Fatalf("Validate() = %v, want the backend field and its install command", err)
	}
	if dir := s.RuntimeDir(); dir != missing.Dir {
		t.Fatalf("RuntimeDir() of a build not installed = %q, want %s (the worker's error then names the fix)", dir, missing.Dir)
	}
	s.LlamaLib = "/opt/llama/bin"
	if err := s.Validate(); err != nil {
		t.Fatalf("a runtime folder overrides the backend: %v", err)
	}
	s.LlamaLib, s.Backend = "", "rocm"
	if err := s.Validate(); !errors.As(err, &se) || se.Field != "llama.cpp backend" || !errors.Is(err, llamaruntime.ErrUnknownBackend) {
		t.Fatalf("an unknown backend: %v", err)
	}
}

func TestLoadSettingsResetsUnknownBackend(t *testing.T) {
	backendBuilds(t)
	a := test.NewTempApp(t)
	a.Preferences().SetString(keyBackend, "rocm")
	if got := LoadSettings(a.Preferences()); got.Backend != "" || got.Validate() != nil {
		t.Fatalf("an unknown stored backend should go back to auto: %q (%v)", got.Backend, got.Validate())
	}
}
