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
	"strings"
)

// ErrFolderInUse is the error of an install into a folder that holds other files.
var ErrFolderInUse = errors.New("install folder is not empty")

// markerFile records a finished install, so a half-copied folder is never taken as one.
const markerFile = ".beekeeper-installed"

// Installed reports whether dir holds a finished install.
func Installed(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, markerFile))
	return err == nil
}

// Install installs the default build (see InstallBackend).
func Install(ctx context.Context, dir string, logf func(format string, args ...any)) (string, error) {
	return InstallBackend(ctx, "", dir, logf)
}

// InstallBackend fetches the prebuilt llama.cpp packages of a backend ("" = the default)
// with `npm pack` and unpacks their shared libraries into dir (the build's cache folder
// when empty). It does nothing when dir already holds a finished install. logf receives
// progress lines.
func InstallBackend(ctx context.Context, backend, dir string, logf func(format string, args ...any)) (string, error) {
	return InstallPlatform(ctx, "", backend, dir, logf)
}

// InstallPlatform is InstallBackend for another platform's build (platform "" = this
// machine's; else a name of Platform's, such as win-x64): the libraries of a Windows
// build, fetched on Linux, for Wine or to copy to that machine. The default dir is the
// build's folder in this machine's cache, named for its platform.
func InstallPlatform(ctx context.Context, platform, backend, dir string, logf func(format string, args ...any)) (string, error) {
	bs, err := PlatformBuilds(platform)
	if err != nil {
		return "", err
	}
	target := platform
	if target == "" {
		target = runtime.GOOS + "/" + runtime.GOARCH
	}
	b, err := buildIn(bs, backend, target)
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = b.Dir
	}
	if Installed(dir) {
		// A record naming another build (of any platform) is no install of this one;
		// one naming no known package is a finished install of ours all the same.
		if got := installedPackage(dir); got != b.Packages[0] && knownPackage(got) {
			return "", fmt.Errorf("%w: %s holds the %s build (%s), not %s; name another folder",
				ErrFolderInUse, dir, backendIn(bs, dir), got, b.Packages[0])
		}
		logf("llama.cpp %s runtime already installed in %s", b.Backend, dir)
		return dir, nil
	}
	// The install moves a finished folder into place, so dir is either absent or
	// empty unless it holds something else: never replace a user's folder.
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%w: %s already holds files and no Beekeeper install; name an empty or new folder", ErrFolderInUse, dir)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("installing the llama.cpp runtime needs npm (apt-get install npm): %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("create runtime folder: %w", err)
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".install-*")
	if err != nil {
		return "", fmt.Errorf("create temp folder: %w", err)
	}
	defer os.RemoveAll(work)
	staging := filepath.Join(work, "lib")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return "", err
	}

	var specs []string
	for _, name := range b.Packages {
		spec := fmt.Sprintf("%s/%s@%s", NpmScope, name, NpmVersion)
		logf("fetching %s from the npm registry", spec)
		tgz, err := npmPack(ctx, npm, spec, work)
		if err != nil {
			return "", err
		}
		// Every package of a build keeps its files under the first one's bins folder
		// (CUDA's -ext adds fallback/libggml-cuda.so there).
		n, err := extractLibs(tgz, "package/bins/"+b.Packages[0]+"/", staging)
		if err != nil {
			return "", fmt.Errorf("unpack %s: %w", spec, err)
		}
		if err := os.Remove(tgz); err != nil { // CUDA's tarballs are hundreds of MB
			return "", err
		}
		logf("unpacked %d libraries", n)
		specs = append(specs, spec)
	}
	if err := linkUnversioned(staging); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(staging, markerFile), []byte(strings.Join(specs, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	_ = os.Remove(dir) // an empty folder the user named; Rename needs it gone
	if err := os.Rename(staging, dir); err != nil {
		return "", fmt.Errorf("move runtime into place: %w", err)
	}
	logf("llama.cpp %s runtime installed in %s", b.Backend, dir)
	return dir, nil
}

// npmPack downloads one package's tarball into dir and returns its path.
func npmPack(ctx context.Context, npm, spec, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, npm, "pack", "--silent", spec)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("npm pack %s: %w: %s (is the npm registry reachable?)", spec, err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, lastLine(string(out))), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// extractLibs copies the shared libraries under prefix in the tarball into dst.
func extractLibs(tgz, prefix, dst string) (int, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
	}
	tr := tar.NewReader(gz)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		rel, ok := strings.CutPrefix(hdr.Name, prefix)
		if hdr.Typeflag != tar.TypeReg || !ok || !isLibrary(rel) {
			continue
		}
		// Subfolders are kept (CUDA's fallback/); a name climbing out of dst is refused.
		rel = path.Clean(rel)
		if !filepath.IsLocal(rel) {
			return n, fmt.Errorf("unsafe path %q in the package", hdr.Name)
		}
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return n, err
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
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
	if n == 0 {
		return 0, fmt.Errorf("no libraries under %s", prefix)
	}
	return n, nil
}

func isLibrary(name string) bool {
	return strings.HasSuffix(name, ".so") || strings.HasSuffix(name, ".dylib") || strings.HasSuffix(name, ".dll")
}

// linkUnversioned gives the libraries the unversioned names yzma's loader opens:
// libllama.so -> libllama.vX.so and libggml.so -> libggml.vX.so (libllama.vulkan.vX.so in
// the GPU builds), the same with .dylib on macOS; Windows builds are renamed instead
// (see unversionDLLs).
func linkUnversioned(dir string) error {
	for _, ext := range []string{".so", ".dylib"} {
		for _, base := range []string{"libllama", "libggml"} {
			matches, _ := filepath.Glob(filepath.Join(dir, base+".*"+ext))
			if len(matches) == 0 {
				continue // not this platform's package, or already unversioned
			}
			link := filepath.Join(dir, base+ext)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Base(matches[0]), link); err != nil {
				return fmt.Errorf("link %s: %w", link, err)
			}
		}
	}
	return unversionDLLs(dir)
}
