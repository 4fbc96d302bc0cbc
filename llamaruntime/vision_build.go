package llamaruntime

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
)

// The npm builds carry no multimodal library, but node-llama-cpp's own package, of the
// same version, carries a git bundle of the exact llama.cpp source they were built from:
// mtmd compiled from it speaks the installed libllama's ABI.
const (
	sourcePackage = "node-llama-cpp"
	sourceBundle  = "package/llama/gitRelease.bundle"
)

// sourcePaths are the parts of the llama.cpp tree mtmd's build reads: its sources, the
// public headers of llama and ggml, the vendored hash, image, audio and subprocess
// code, and llama's staging header that mtmd-helper-gen includes.
var sourcePaths = []string{
	"tools/mtmd", "include", "ggml/include", "src/llama-ext.h",
	"vendor/hash", "vendor/stb", "vendor/miniaudio", "vendor/sheredom",
}

// mtmdUnits are the translation units of libmtmd, as this release's
// tools/mtmd/CMakeLists.txt (and vendor/hash's) lists them, the biggest first so the
// parallel build ends together. The 44 model graphs (tools/mtmd/models/*.cpp) are
// compiled as one unit that includes them all: apart, each pays the same headers again,
// 13 s together against 200 s apart on two cores.
var mtmdUnits = []string{
	"tools/mtmd/clip.cpp",
	"tools/mtmd/mtmd-helper.cpp",
	modelsUnit,
	"tools/mtmd/mtmd.cpp",
	"tools/mtmd/mtmd-image.cpp",
	"tools/mtmd/mtmd-audio.cpp",
	"tools/mtmd/mtmd-helper-gen.cpp",
	"vendor/hash/hash.cpp",
	"vendor/hash/sha1/sha1.c",
	"vendor/hash/sha256/sha256.c",
	"vendor/hash/xxhash/xxhash.c",
}

// modelsUnit is the generated unit that includes every tools/mtmd/models/*.cpp.
const modelsUnit = "tools/mtmd/models-all.cpp"

// cCUnits are compiled as C; every other .c is C++ (sha1 lives in a C++ namespace).
var cUnits = []string{"vendor/hash/sha256/sha256.c", "vendor/hash/xxhash/xxhash.c"}

// objMarker records a finished object cache.
const objMarker = ".beekeeper-built"

// visionObjDir caches the compiled objects, shared by every build's folder: each links
// them against its own libllama (the CPU and GPU builds name theirs differently).
func visionObjDir() string {
	return filepath.Join(dirs.Cache(), "llama.cpp", "mtmd-"+NpmVersion)
}

// InstallVision builds llama.cpp's multimodal library into a runtime folder: the folder
// of backend's build ("" = the default) when dir is empty. The runtime must be installed
// there already. The first build fetches node-llama-cpp with npm, unpacks its llama.cpp
// source with git and compiles mtmd with the system's C++ compiler (≈ 1–2 minutes on two
// cores), keeping the objects in the cache, so the next folder only links them (< 1 s).
// A folder that has the library already is left as it is. logf receives progress lines.
func InstallVision(ctx context.Context, backend, dir string, logf func(format string, args ...any)) (string, error) {
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("%w: the build covers Linux; on %s put a llama.cpp build's %s in the runtime folder yourself",
			ErrVisionUnsupported, runtime.GOOS, VisionFile())
	}
	if dir == "" {
		b, err := BuildFor(backend)
		if err != nil {
			return "", err
		}
		dir = b.Dir
	}
	if !hasLibrary(dir) {
		return "", &MissingError{Looked: []string{dir}, Backend: backend}
	}
	if HasVision(dir) {
		logf("llama.cpp multimodal library already in %s", dir)
		return dir, nil
	}
	objDir := visionObjDir()
	if _, err := os.Stat(filepath.Join(objDir, objMarker)); err != nil {
		if err := buildVisionObjects(ctx, objDir, logf); err != nil {
			return "", err
		}
	}
	if err := linkVision(ctx, objDir, dir); err != nil {
		return "", err
	}
	logf("llama.cpp multimodal library installed: %s", filepath.Join(dir, VisionFile()))
	return dir, nil
}

// tools are the programs the build runs.
type tools struct{ npm, git, cxx string }

func findTools() (tools, error) {
	var t tools
	var err error
	if t.npm, err = exec.LookPath("npm"); err != nil {
		return t, fmt.Errorf("building the multimodal library fetches llama.cpp's source with npm (apt-get install npm): %w", err)
	}
	if t.git, err = exec.LookPath("git"); err != nil {
		return t, fmt.Errorf("building the multimodal library unpacks llama.cpp's source with git (apt-get install git): %w", err)
	}
	t.cxx, err = compiler()
	return t, err
}

// compiler is $CXX, else g++, else c++.
func compiler() (string, error) {
	if cxx := os.Getenv("CXX"); cxx != "" {
		p, err := exec.LookPath(cxx)
		if err != nil {
			return "", fmt.Errorf("$CXX=%s: %w", cxx, err)
		}
		return p, nil
	}
	for _, name := range []string{"g++", "c++"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("building the multimodal library needs a C++ compiler and found none (g++, c++ or $CXX): apt-get install g++")
}

// buildVisionObjects fetches the source and compiles every unit into objDir.
func buildVisionObjects(ctx context.Context, objDir string, logf func(string, ...any)) error {
	t, err := findTools()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(objDir), 0o755); err != nil {
		return fmt.Errorf("create cache folder: %w", err)
	}
	work, err := os.MkdirTemp(filepath.Dir(objDir), ".mtmd-build-*")
	if err != nil {
		return fmt.Errorf("create temp folder: %w", err)
	}
	defer os.RemoveAll(work)

	start := time.Now()
	spec := sourcePackage + "@" + NpmVersion
	logf("fetching llama.cpp's source (%s) from the npm registry", spec)
	tgz, err := npmPack(ctx, t.npm, spec, work)
	if err != nil {
		return err
	}
	bundle := filepath.Join(work, "llama.bundle")
	if err := extractFile(tgz, sourceBundle, bundle); err != nil {
		return fmt.Errorf("unpack %s: %w", spec, err)
	}
	_ = os.Remove(tgz)
	src := filepath.Join(work, "src")
	if err := unpackBundle(ctx, t.git, bundle, filepath.Join(work, "git"), src); err != nil {
		return err
	}
	if err := writeModelsUnit(src); err != nil {
		return err
	}
	logf("compiling llama.cpp's multimodal library with %s: %d units on %d cores", t.cxx, len(mtmdUnits), runtime.NumCPU())
	objs := filepath.Join(work, "obj")
	if err := os.Mkdir(objs, 0o755); err != nil {
		return err
	}
	if err := compileUnits(ctx, t.cxx, src, objs, logf); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(objs, objMarker), []byte(spec+"\n"), 0o644); err != nil {
		return err
	}
	_ = os.RemoveAll(objDir) // an unfinished cache (no marker)
	if err := os.Rename(objs, objDir); err != nil {
		if _, statErr := os.Stat(filepath.Join(objDir, objMarker)); statErr == nil {
			return nil // another install finished first
		}
		return fmt.Errorf("move the objects into the cache: %w", err)
	}
	logf("compiled in %s", time.Since(start).Round(time.Second))
	return nil
}

// extractFile copies the file at name in a .tgz to dst.
func extractFile(tgz, name, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("no %s in the package", name)
		}
		if err != nil {
			return err
		}
		if hdr.Name != name || hdr.Typeflag != tar.TypeReg {
			continue
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
}

// unpackBundle clones the git bundle (bare) and writes the source paths of its HEAD
// into src, through git archive.
func unpackBundle(ctx context.Context, git, bundle, repo, src string) error {
	clone := exec.CommandContext(ctx, git, "clone", "--quiet", "--bare", bundle, repo)
	if out, err := clone.CombinedOutput(); err != nil {
		return fmt.Errorf("git clone the llama.cpp bundle: %w: %s", err, strings.TrimSpace(string(out)))
	}
	archive := exec.CommandContext(ctx, git, "--git-dir", repo, "archive", "--format=tar", "HEAD", "--")
	archive.Args = append(archive.Args, sourcePaths...)
	var stderr strings.Builder
	archive.Stderr = &stderr
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	if err := archive.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	n, untarErr := untar(pipe, src)
	if untarErr != nil {
		_, _ = io.Copy(io.Discard, pipe)
	}
	if err := archive.Wait(); err != nil {
		return fmt.Errorf("git archive of the llama.cpp source: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if untarErr != nil {
		return fmt.Errorf("unpack the llama.cpp source: %w", untarErr)
	}
	if n == 0 {
		return errors.New("the llama.cpp bundle holds none of mtmd's source")
	}
	return nil
}

// untar writes the regular files of a tar stream under dst and counts them.
func untar(r io.Reader, dst string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		rel := path.Clean(hdr.Name)
		if !filepath.IsLocal(rel) {
			return n, fmt.Errorf("unsafe path %q in the source", hdr.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return n, err
		}
		out, err := os.Create(target)
		if err != nil {
			return n, err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return n, err
		}
		if err := out.Close(); err != nil {
			return n, err
		}
		n++
	}
}

// writeModelsUnit writes modelsUnit: an include of every model graph.
func writeModelsUnit(src string) error {
	models, err := filepath.Glob(filepath.Join(src, "tools", "mtmd", "models", "*.cpp"))
	if err != nil || len(models) == 0 {
		return fmt.Errorf("no model graphs in the llama.cpp source (tools/mtmd/models): %v", err)
	}
	slices.Sort(models)
	var b strings.Builder
	for _, m := range models {
		fmt.Fprintf(&b, "#include \"models/%s\"\n", filepath.Base(m))
	}
	return os.WriteFile(filepath.Join(src, filepath.FromSlash(modelsUnit)), []byte(b.String()), 0o644)
}

// compileUnits compiles mtmdUnits into objs, as many at once as there are cores.
func compileUnits(ctx context.Context, cxx, src, objs string, logf func(string, ...any)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		done     int
		firstErr error
	)
	for range max(1, runtime.NumCPU()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for unit := range jobs {
				start := time.Now()
				err := compileUnit(ctx, cxx, src, unit, filepath.Join(objs, objName(unit)))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
					cancel() // the other compilers stop too
				}
				if err == nil {
					done++
					logf("  compiled %s (%d/%d, %s)", unit, done, len(mtmdUnits), time.Since(start).Round(100*time.Millisecond))
				}
				mu.Unlock()
			}
		}()
	}
	for _, u := range mtmdUnits {
		if ctx.Err() != nil {
			break
		}
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// objName is a unit's object file name: its path, flattened.
func objName(unit string) string {
	return strings.NewReplacer("/", "_", ".", "_").Replace(unit) + ".o"
}

// compileUnit compiles one unit with the flags of mtmd's CMake build (a shared
// library's exports, C++17, optimized) and no warnings: it is upstream's code.
func compileUnit(ctx context.Context, cxx, src, unit, obj string) error {
	args := []string{"-c", "-O2", "-fPIC", "-pthread", "-w", "-DNDEBUG", "-DLLAMA_BUILD", "-DLLAMA_SHARED", "-DGGML_SHARED",
		"-I", filepath.Join(src, "tools", "mtmd"), "-I", filepath.Join(src, "include"),
		"-I", filepath.Join(src, "ggml", "include"), "-I", filepath.Join(src, "vendor"),
		"-I", filepath.Join(src, "vendor", "hash")}
	if slices.Contains(cUnits, unit) {
		args = append(args, "-x", "c", "-std=c11")
	} else {
		args = append(args, "-x", "c++", "-std=c++17")
	}
	args = append(args, filepath.Join(src, filepath.FromSlash(unit)), "-o", obj)
	cmd := exec.CommandContext(ctx, cxx, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("compile %s: %w:\n%s", unit, err, tail(string(out), 2000))
	}
	return nil
}

// linkVision links the cached objects against dir's libllama and ggml into dir's
// multimodal library, which finds them beside itself ($ORIGIN) when loaded.
func linkVision(ctx context.Context, objDir, dir string) error {
	cxx, err := compiler()
	if err != nil {
		return err
	}
	objs, err := filepath.Glob(filepath.Join(objDir, "*.o"))
	if err != nil || len(objs) != len(mtmdUnits) {
		return fmt.Errorf("the object cache %s holds %d of %d objects: remove it and run this again", objDir, len(objs), len(mtmdUnits))
	}
	tmp, err := os.CreateTemp(dir, "."+VisionFile()+".tmp-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", VisionFile(), err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append([]string{"-shared", "-o", tmp.Name()}, objs...)
	// By path, so each build's library is named as its own soname says (libllama.vX.so,
	// libllama.vulkan.vX.so).
	for _, lib := range []string{"libllama.so", "libggml.so", "libggml-base.so"} {
		args = append(args, filepath.Join(dir, lib))
	}
	args = append(args, "-pthread", "-Wl,-soname,"+VisionFile(), "-Wl,-rpath,$ORIGIN", "-Wl,--no-undefined")
	if out, err := exec.CommandContext(ctx, cxx, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("link %s against %s: %w:\n%s", VisionFile(), dir, err, tail(string(out), 2000))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, VisionFile())); err != nil {
		return fmt.Errorf("move %s into place: %w", VisionFile(), err)
	}
	return nil
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
