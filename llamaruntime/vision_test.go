package llamaruntime

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hybridgroup/yzma/pkg/mtmd"
)

// TestVisionMissingNamesTheFix: a runtime folder without the multimodal library is an
// ErrMissing whose message names the install command of that folder's build.
func TestVisionMissingNamesTheFix(t *testing.T) {
	cleanEnv(t)
	def := Builds()[0]
	fakeInstall(t, def)
	if HasVision(def.Dir) {
		t.Fatal("HasVision on a folder without the library")
	}
	err := LoadVision(def.Dir)
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "beekeeper runtime install --vision") ||
		strings.Contains(err.Error(), "--backend") || !strings.Contains(err.Error(), "apt-get install g++") {
		t.Fatalf("LoadVision of a folder without it: %v", err)
	}
	gpu := gpuBuild(t)
	if err := (&VisionMissingError{Dir: gpu.Dir}).Error(); !strings.Contains(err, "--vision --backend "+gpu.Backend) {
		t.Fatalf("the %s build's fix: %s", gpu.Backend, err)
	}
}

// TestInstallVisionSteps: it needs the runtime first, does nothing where the library
// is (not even looking for its tools), and names each missing tool's package.
func TestInstallVisionSteps(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, err := InstallVision(t.Context(), "", t.TempDir(), t.Logf); !errors.Is(err, ErrVisionUnsupported) {
			t.Fatalf("on %s: %v", runtime.GOOS, err)
		}
		return
	}
	cleanEnv(t)
	if _, err := InstallVision(t.Context(), "", "", t.Logf); !errors.Is(err, ErrMissing) {
		t.Fatalf("without the runtime: %v", err)
	}
	def := Builds()[0]
	fakeInstall(t, def)

	bin := t.TempDir()
	t.Setenv("PATH", bin)
	t.Setenv("CXX", "")
	for _, c := range []struct{ tool, want string }{
		{"", "apt-get install npm"},
		{"npm", "apt-get install git"},
		{"git", "apt-get install g++"},
	} {
		if c.tool != "" { // the tools are only looked for, never run, before the fetch
			if err := os.WriteFile(filepath.Join(bin, c.tool), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := InstallVision(t.Context(), "", "", t.Logf); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("with %q on the PATH: %v, want it to say %q", c.tool, err, c.want)
		}
	}

	touch(t, filepath.Join(def.Dir, VisionFile()))
	t.Setenv("PATH", "")
	var said []string
	if _, err := InstallVision(t.Context(), "", "", func(f string, a ...any) { said = append(said, f) }); err != nil ||
		len(said) != 1 || !strings.Contains(said[0], "already") {
		t.Fatalf("with the library there: %v %q", err, said)
	}
}

func TestWriteModelsUnit(t *testing.T) {
	src := t.TempDir()
	for _, m := range []string{"qwen2vl.cpp", "llava.cpp", "models.h"} {
		touch(t, filepath.Join(src, "tools", "mtmd", "models", m))
	}
	if err := writeModelsUnit(src); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(modelsUnit)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "#include \"models/llava.cpp\"\n#include \"models/qwen2vl.cpp\"\n"; string(b) != want {
		t.Fatalf("models unit:\n%s\nwant:\n%s", b, want)
	}
}

// TestVisionLinksAgainstItsFolder links the compiled objects (the cache `runtime install
// --vision` leaves) against a copy of the CPU runtime: the library needs that folder's
// libllama by its soname, finds it beside itself, and yzma's mtmd binding finds every
// function it declares in it.
func TestVisionLinksAgainstItsFolder(t *testing.T) {
	objDir, rt := visionObjDir(), DefaultDir()
	if _, err := os.Stat(filepath.Join(objDir, objMarker)); err != nil || !hasLibrary(rt) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must have the runtime and the vision objects (scripts/setup.sh builds them): %v", err)
		}
		t.Skipf("no vision objects in %s or no runtime in %s: `beekeeper runtime install --vision` makes both", objDir, rt)
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(rt)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".so") && e.Name() != VisionFile() {
			if err := os.Symlink(filepath.Join(rt, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := linkVision(context.Background(), objDir, dir); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(filepath.Join(dir, VisionFile()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	needed, _ := f.ImportedLibraries()
	llama, _ := elf.Open(filepath.Join(rt, LibraryFile()))
	defer llama.Close()
	soname, _ := llama.DynString(elf.DT_SONAME)
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	if len(soname) != 1 || !slices.Contains(needed, soname[0]) || !slices.Contains(runpath, "$ORIGIN") {
		t.Fatalf("needs %q with runpath %q; the folder's libllama is %q", needed, runpath, soname)
	}
	if err := mtmd.Load(dir); err != nil {
		t.Fatalf("yzma's mtmd binding: %v", err)
	}
}
