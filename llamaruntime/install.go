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

// Install fetches the prebuilt llama.cpp package with `npm pack` and unpacks its shared
// libraries into dir (DefaultDir when empty). It does nothing when dir already holds a
// finished install. logf receives progress lines.
func Install(ctx context.Context, dir string, logf func(format string, args ...any)) (string, error) {
	if dir == "" {
		dir = DefaultDir()
	}
	if Installed(dir) {
		logf("llama.cpp runtime already installed in %s", dir)
		return dir, nil
	}
	// The install moves a finished folder into place, so dir is either absent or
	// empty unless it holds something else: never replace a user's folder.
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%w: %s already holds files and no Beekeeper install; name an empty or new folder", ErrFolderInUse, dir)
	}
	plat, err := platformPackage()
	if err != nil {
		return "", err
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

	pkg := fmt.Sprintf("%s/%s@%s", NpmScope, plat, NpmVersion)
	logf("fetching %s from the npm registry", pkg)
	cmd := exec.CommandContext(ctx, npm, "pack", "--silent", pkg)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("npm pack %s: %w: %s", pkg, err, strings.TrimSpace(string(out)))
	}
	tgz := filepath.Join(work, strings.TrimSpace(lastLine(string(out))))
	staging := filepath.Join(work, "lib")
	if err := os.Mkdir(staging, 0o755); err != nil {
		return "", err
	}
	n, err := extractLibs(tgz, "package/bins/"+plat+"/", staging)
	if err != nil {
		return "", fmt.Errorf("unpack %s: %w", tgz, err)
	}
	logf("unpacked %d libraries", n)
	if err := linkUnversioned(staging); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(staging, markerFile), []byte(pkg+"\n"), 0o644); err != nil {
		return "", err
	}
	_ = os.Remove(dir) // an empty folder the user named; Rename needs it gone
	if err := os.Rename(staging, dir); err != nil {
		return "", fmt.Errorf("move runtime into place: %w", err)
	}
	logf("llama.cpp runtime installed in %s", dir)
	return dir, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// extractLibs copies the regular files under prefix in the tarball into dst.
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
		if hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(hdr.Name, prefix) {
			continue
		}
		name := path.Base(hdr.Name)
		if !isLibrary(name) {
			continue
		}
		out, err := os.OpenFile(filepath.Join(dst, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
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

// linkUnversioned adds libllama.so -> libllama.vX.so and libggml.so -> libggml.vX.so,
// the names yzma's loader opens.
func linkUnversioned(dir string) error {
	for _, base := range []string{"libllama", "libggml"} {
		matches, _ := filepath.Glob(filepath.Join(dir, base+".v*.so"))
		if len(matches) == 0 {
			continue // not a Linux package, or already unversioned
		}
		link := filepath.Join(dir, base+".so")
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Base(matches[0]), link); err != nil {
			return fmt.Errorf("link %s: %w", link, err)
		}
	}
	return nil
}
