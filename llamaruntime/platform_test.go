package llamaruntime

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlatformBuilds: another platform's builds are listed by its npm name, the default
// first; Metal is Apple silicon's default.
func TestPlatformBuilds(t *testing.T) {
	cleanEnv(t)
	for _, c := range []struct {
		platform string
		backends []string
	}{
		{"win-x64", []string{BackendCPU, BackendVulkan, BackendCUDA}},
		{"mac-arm64", []string{BackendMetal}},
		{"mac-x64", []string{BackendCPU}},
		{"linux-arm64", []string{BackendCPU}},
	} {
		bs, err := PlatformBuilds(c.platform)
		if err != nil || len(bs) != len(c.backends) {
			t.Fatalf("%s: %v, %v", c.platform, bs, err)
		}
		for i, b := range bs {
			if b.Backend != c.backends[i] || !strings.HasPrefix(b.Packages[0], strings.TrimSuffix(c.platform, "64")) ||
				filepath.Base(b.Dir) != b.Packages[0]+"-"+NpmVersion {
				t.Fatalf("%s build %d: %+v", c.platform, i, b)
			}
		}
	}
	if bs, err := PlatformBuilds(""); err != nil || len(bs) != len(Builds()) {
		t.Fatalf(`PlatformBuilds("") is this machine's: %v %v`, bs, err)
	}
	if _, err := PlatformBuilds("amiga"); !errors.Is(err, ErrUnknownPlatform) || !strings.Contains(err.Error(), "win-x64") {
		t.Fatalf("an unknown platform must name the known ones: %v", err)
	}
}

// TestInstallPlatformKeepsPlatformsApart: a folder holding another platform's build is no
// install of this one, and is never overwritten; the check comes before npm.
func TestInstallPlatformKeepsPlatformsApart(t *testing.T) {
	cleanEnv(t)
	t.Setenv("PATH", "") // no npm: reaching for it would fail differently
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, markerFile), []byte(NpmScope+"/linux-x64@"+NpmVersion+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := InstallPlatform(t.Context(), "win-x64", "", dir, func(string, ...any) {})
	if !errors.Is(err, ErrFolderInUse) || !strings.Contains(err.Error(), "linux-x64") {
		t.Fatalf("installing win-x64 over linux-x64: %v, want ErrFolderInUse naming linux-x64", err)
	}
	if _, err := InstallPlatform(t.Context(), "win-x64", "metal", t.TempDir(), func(string, ...any) {}); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("win-x64 has no metal build: %v", err)
	}
}

// fakeDLL is the smallest 64-bit PE library whose import table names imports.
func fakeDLL(t *testing.T, imports ...string) []byte {
	t.Helper()
	const (
		sectionRVA = 0x1000
		sectionOff = 0x200
		namesRVA   = sectionRVA + 0x100
	)
	var b bytes.Buffer
	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 0x40)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(binary.Write(&b, binary.LittleEndian, pe.FileHeader{Machine: pe.IMAGE_FILE_MACHINE_AMD64,
		NumberOfSections: 1, SizeOfOptionalHeader: 240, Characteristics: pe.IMAGE_FILE_DLL | pe.IMAGE_FILE_EXECUTABLE_IMAGE}))
	opt := pe.OptionalHeader64{Magic: 0x20b, SectionAlignment: 0x1000, FileAlignment: 0x200,
		SizeOfImage: 0x2000, SizeOfHeaders: sectionOff, NumberOfRvaAndSizes: 16}
	opt.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_IMPORT] = pe.DataDirectory{VirtualAddress: sectionRVA, Size: uint32(20 * (len(imports) + 1))}
	must(binary.Write(&b, binary.LittleEndian, opt))
	var name [8]uint8
	copy(name[:], ".idata")
	must(binary.Write(&b, binary.LittleEndian, pe.SectionHeader32{Name: name, VirtualSize: 0x200,
		VirtualAddress: sectionRVA, SizeOfRawData: 0x200, PointerToRawData: sectionOff}))
	out := make([]byte, sectionOff+0x200)
	copy(out, b.Bytes())
	for i, imp := range imports {
		binary.LittleEndian.PutUint32(out[sectionOff+20*i+12:], uint32(namesRVA+32*i))
		copy(out[sectionOff+0x100+32*i:], imp+"\x00")
	}
	return out
}

// TestUnversionDLLs: a Windows build's versioned llama and ggml DLLs get the names yzma
// opens, and the imports of every DLL follow, so Windows loads each once.
func TestUnversionDLLs(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"llama.v0.4.0.dll":        fakeDLL(t, "ggml.v0.4.0.dll", "ggml-base.dll", "KERNEL32.dll"),
		"ggml.v0.4.0.dll":         fakeDLL(t, "ggml-base.dll"),
		"llama-common.dll":        fakeDLL(t, "LLAMA.V0.4.0.DLL", "ggml.v0.4.0.dll"),
		"ggml-base.dll":           fakeDLL(t, "KERNEL32.dll"),
		"fallback/ggml-cuda.dll":  fakeDLL(t, "ggml-base.dll", "ggml.v0.4.0.dll"),
		"not-a-library-at-all.md": []byte("readme"),
	}
	for name, body := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := linkUnversioned(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"llama.dll":              {"ggml.dll\x00", "ggml-base.dll\x00", "KERNEL32.dll\x00"},
		"ggml.dll":               {"ggml-base.dll\x00"},
		"llama-common.dll":       {"llama.dll\x00", "ggml.dll\x00"},
		"fallback/ggml-cuda.dll": {"ggml-base.dll\x00", "ggml.dll\x00"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, w := range want {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s does not import %q", name, strings.TrimSuffix(w, "\x00"))
			}
		}
		if bytes.Contains(bytes.ToLower(b), []byte("v0.4.0")) {
			t.Errorf("%s still names a versioned DLL", name)
		}
	}
	for _, gone := range []string{"llama.v0.4.0.dll", "ggml.v0.4.0.dll"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still there", gone)
		}
	}
	if err := linkUnversioned(dir); err != nil {
		t.Fatalf("a second run must be harmless: %v", err)
	}
}

// TestLinkUnversionedDylibs: macOS builds (libllama.metal.v0.4.0.dylib) get the
// libllama.dylib and libggml.dylib names yzma opens there.
func TestLinkUnversionedDylibs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"libllama.metal.v0.4.0.dylib", "libggml.metal.v0.4.0.dylib", "libggml-base.dylib", "libggml-metal.so"} {
		touch(t, filepath.Join(dir, f))
	}
	if err := linkUnversioned(dir); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{"libllama.dylib": "libllama.metal.v0.4.0.dylib", "libggml.dylib": "libggml.metal.v0.4.0.dylib"} {
		if got, err := os.Readlink(filepath.Join(dir, link)); err != nil || got != want {
			t.Fatalf("%s -> %q (%v), want %s", link, got, err, want)
		}
	}
}
