package ui

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/beekeeper-hive/beekeeper/models"
)

// Typed model paths (issue 13 item 6): Fyne 2.7's open dialog has no path field, so a
// path is typed or pasted where a model is asked for instead: the Models screen's URL
// box adds it to the library, the spawn dialog's model field spawns it.

// errIsFolder is a model path that names a folder.
var errIsFolder = errors.New("is a folder")

// modelFileError is a typed model path that cannot be used: Err is fs.ErrNotExist,
// errIsFolder, models.ErrNotGGUF (with the reason) or why it cannot be read.
type modelFileError struct {
	Path string
	Err  error
}

func (e *modelFileError) Error() string {
	switch {
	case errors.Is(e.Err, fs.ErrNotExist):
		return "there is no file at " + e.Path
	case errors.Is(e.Err, errIsFolder):
		return e.Path + " is a folder, not a model file"
	case errors.Is(e.Err, models.ErrNotGGUF):
		s := e.Path + " is not a GGUF model file, so no worker can load it"
		// The reader says where the file stops being one ("bad magic at byte 0").
		if why := strings.TrimPrefix(e.Err.Error(), models.ErrNotGGUF.Error()+": "); why != e.Err.Error() && why != "" {
			s += " (" + why + ")"
		}
		return s
	}
	return fmt.Sprintf("%s cannot be read: %v", e.Path, e.Err)
}

func (e *modelFileError) Unwrap() error { return e.Err }

// explain is the error dialog's title and what the user can do about it.
func (e *modelFileError) explain() (title, fix string) {
	switch {
	case errors.Is(e.Err, fs.ErrNotExist):
		return "No such file", "check the path: give the whole path of a .gguf file, such as ~/Downloads/model.gguf (~ is your home folder)."
	case errors.Is(e.Err, errIsFolder):
		return "That is a folder", "give the path of a .gguf file in it."
	case errors.Is(e.Err, models.ErrNotGGUF):
		return "Not a model file", "choose a .gguf model file (llama.cpp's format); Discover… finds one on Hugging Face."
	}
	return "The file cannot be read", "check the file's permissions."
}

// expandPath turns a typed or pasted path into an absolute one: surrounding spaces and
// the quotes a file manager's "copy path" adds go, ~ is the home folder, a file:// URL
// is its path. relative says whether a relative path is taken (from the working folder);
// where it is not, ok is false for anything but an absolute path, ~ or file://, so the
// URL box tells a path from a URL to download.
func expandPath(text string, relative bool) (path string, ok bool) {
	text = strings.TrimSpace(text)
	if len(text) >= 2 && (text[0] == '"' || text[0] == '\'') && text[len(text)-1] == text[0] {
		text = text[1 : len(text)-1]
	}
	switch {
	case text == "":
		return "", false
	case strings.HasPrefix(text, "file://"):
		u, err := url.Parse(text)
		if err != nil || u.Path == "" {
			return "", false
		}
		return filepath.FromSlash(u.Path), true
	case text == "~" || strings.HasPrefix(text, "~/") || strings.HasPrefix(text, `~\`):
		home, err := os.UserHomeDir()
		if err != nil {
			return "", false
		}
		return filepath.Join(home, text[1:]), true
	case filepath.IsAbs(text):
		return filepath.Clean(text), true
	case relative && !strings.Contains(text, "://"):
		abs, err := filepath.Abs(text)
		return abs, err == nil
	}
	return "", false
}

// checkModelFile reports why path cannot be a model (a *modelFileError), or nil: it
// must be a file whose header is GGUF's.
func checkModelFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &modelFileError{Path: path, Err: fs.ErrNotExist}
	case err != nil:
		return &modelFileError{Path: path, Err: errors.Unwrap(err)}
	case st.IsDir():
		return &modelFileError{Path: path, Err: errIsFolder}
	}
	if _, err := models.Inspect(path); err != nil {
		if cause := errors.Unwrap(err); cause != nil {
			err = cause // Inspect names the path, which the message already does
		}
		return &modelFileError{Path: path, Err: err}
	}
	return nil
}
