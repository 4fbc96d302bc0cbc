package models

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls changed after .gguf files appear in dir, change or go, until ctx ends.
// It calls it once as soon as the watch is in place, so that nothing done to the folder
// before then (after the caller's first listing) is missed. Events are coalesced:
// changed runs once things have been quiet for quiet, and at least every 4×quiet while
// they are not (a large file being copied in keeps writing). It returns nil when ctx
// ends, or an error when dir cannot be watched at all; the caller's goroutine is the
// watcher's, so it ends with Watch.
func Watch(ctx context.Context, dir string, quiet time.Duration, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch the models folder: %w (press Refresh to see new files)", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch the models folder %s: %w (press Refresh to see new files)", dir, err)
	}
	changed()
	timer := time.NewTimer(quiet)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // the first event not yet reported; zero when none is pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !isModelEvent(ev) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			// Wait for quiet, but never beyond 4×quiet after the first event.
			timer.Reset(min(quiet, max(0, first.Add(4*quiet).Sub(now))))
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// An overflow lost events: look at the folder again.
			if first.IsZero() {
				first = time.Now()
			}
			timer.Reset(quiet)
		case <-timer.C:
			first = time.Time{}
			changed()
		}
	}
}

// isModelEvent says whether ev may change the list: a .gguf file created, written,
// removed or renamed (a finished download is renamed from .part to .gguf).
func isModelEvent(ev fsnotify.Event) bool {
	if !strings.EqualFold(filepath.Ext(ev.Name), ".gguf") {
		return false
	}
	return ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
}
