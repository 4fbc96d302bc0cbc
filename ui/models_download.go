package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/models"
)

// Downloads on the Models screen: one row each, under the URL box. A row offers what
// can be done next: Pause and Cancel while it runs; Resume and Cancel while bytes are
// kept (paused, or failed in a way Resume can continue); Retry and Dismiss when it
// failed and left nothing; Spawn and Dismiss when done. The URL stays in the box until
// the model is in place, so a typo can be fixed.

// startDownload downloads what the URL box names; a path on this computer is added to
// the library instead.
func (v *modelsView) startDownload() {
	text := strings.TrimSpace(v.url.Text)
	// A path (absolute, ~ or file://) is a file on this computer: it joins the library
	// where it is. One that is no model stays in the box, so a typo can be fixed.
	if path, ok := expandPath(text, false); ok {
		if err := checkModelFile(path); err != nil {
			v.u.showError(err)
			return
		}
		v.addFile(path)
		v.url.SetText("")
		return
	}
	req := models.Request{URL: text, SHA256: strings.TrimSpace(v.sum.Text)}
	// Rows that failed and kept nothing are superseded by the new attempt.
	for name, r := range v.rows {
		if p := r.d.Progress(); p.State == models.Failed && !p.CanResume {
			v.dismiss(name, r)
		}
	}
	if err := v.begin(req); err != nil {
		v.u.showError(err)
	}
}

// begin starts a download and shows its row.
func (v *modelsView) begin(req models.Request) error {
	var row *downloadRow // set below, on the UI thread, before any report is handled there
	d, err := v.dl.Start(req, func(p models.Progress) {
		v.u.do(func() {
			if row != nil {
				v.progress(row, p)
			}
		})
	})
	if err != nil {
		return err
	}
	row = v.addDownload(d)
	return nil
}

// restorePending shows the partial downloads left by the last run, paused.
func (v *modelsView) restorePending() {
	rows := map[string]*downloadRow{} // filled before any of them can report: they are paused
	pending, err := v.dl.Pending(func(p models.Progress) {
		v.u.do(func() {
			if r := rows[p.Name]; r != nil {
				v.progress(r, p)
			}
		})
	})
	if err != nil {
		v.u.showError(err)
		return
	}
	for _, d := range pending {
		rows[d.Name()] = v.addDownload(d)
	}
}

// progress shows a report on its row; a finished model is listed, and the URL box
// emptied if it still names it.
func (v *modelsView) progress(r *downloadRow, p models.Progress) {
	if v.rows[p.Name] != r {
		return // dismissed, or replaced by a retry
	}
	r.show(p)
	if p.State == models.Done {
		if strings.TrimSpace(v.url.Text) == r.d.URL() {
			v.url.SetText("")
			v.sum.SetText("")
		}
		v.reload()
	}
}

func (v *modelsView) addDownload(d *models.Download) *downloadRow {
	if old := v.rows[d.Name()]; old != nil {
		v.downloads.Remove(old.box)
	}
	r := newDownloadRow(v, d)
	v.rows[d.Name()] = r
	v.downloads.Add(r.box)
	r.show(d.Progress())
	return r
}

func (v *modelsView) dismiss(name string, r *downloadRow) {
	if v.rows[name] == r {
		delete(v.rows, name)
	}
	r.busy.Hide() // stops its animation
	v.downloads.Remove(r.box)
}

// retry starts a download that failed and kept nothing again, from the same request.
func (v *modelsView) retry(r *downloadRow) {
	if err := v.begin(r.d.Request()); err != nil {
		v.u.showError(err)
	}
}

// downloadRow is one download: bar (or what became of it), buttons, and a line of text.
type downloadRow struct {
	d        *models.Download
	box      *fyne.Container
	bar      *widget.ProgressBar
	busy     *widget.ProgressBarInfinite // while the size is unknown
	headline *widget.Label               // instead of the bar once there is nothing to show in one
	figures  *widget.Label

	pause, resume, retry, cancel, spawn, dismiss *widget.Button
}

func newDownloadRow(v *modelsView, d *models.Download) *downloadRow {
	r := &downloadRow{d: d, bar: widget.NewProgressBar(), busy: widget.NewProgressBarInfinite(),
		headline: widget.NewLabel(""), figures: widget.NewLabel("")}
	r.busy.Hide()
	r.headline.TextStyle.Bold = true
	r.headline.Truncation = fyne.TextTruncateEllipsis
	r.headline.Hide()
	r.figures.Wrapping = fyne.TextWrapWord
	// Pause and Cancel wait for the transfer to stop, so they run off the UI thread.
	r.pause = widget.NewButtonWithIcon("Pause", theme.MediaPauseIcon(), func() {
		v.u.goBackground(func(context.Context) { d.Pause() })
	})
	r.resume = widget.NewButtonWithIcon("Resume", theme.MediaPlayIcon(), func() {
		if err := d.Resume(); err != nil {
			v.u.showError(err)
		}
	})
	r.retry = widget.NewButtonWithIcon("Retry", theme.ViewRefreshIcon(), func() { v.retry(r) })
	r.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() {
		v.u.goBackground(func(context.Context) { d.Cancel() })
	})
	r.spawn = widget.NewButtonWithIcon("Spawn", theme.MediaPlayIcon(), func() {
		v.u.openSpawnDialog(d.Progress().Path)
	})
	r.spawn.Importance = widget.HighImportance
	r.dismiss = widget.NewButtonWithIcon("Dismiss", theme.WindowCloseIcon(), func() { v.dismiss(d.Name(), r) })
	buttons := container.NewHBox(r.pause, r.resume, r.retry, r.cancel, r.spawn, r.dismiss)
	r.box = container.NewBorder(nil, r.figures, nil, buttons, container.NewStack(r.bar, r.busy, r.headline))
	return r
}

// show puts a report on the row.
func (r *downloadRow) show(p models.Progress) {
	running, failed := p.State == models.Running, p.State == models.Failed
	kept := p.CanResume // bytes (or the record to fetch them) are on disk
	ended := (failed && !kept) || p.State == models.Canceled

	// The bar shows bytes on disk; an unknown size while running is an animation; a
	// download that ended with nothing kept has no bar at all, only what happened.
	setVisible(r.bar, !ended && !(running && p.Total == 0))
	setVisible(r.busy, running && p.Total == 0)
	setVisible(r.headline, ended)
	switch {
	case p.State == models.Done:
		r.bar.SetValue(1)
	case p.Total > 0:
		r.bar.SetValue(float64(p.Received) / float64(p.Total))
	}
	switch {
	case failed && !kept:
		r.headline.Importance = widget.DangerImportance
		r.headline.SetText("Download of " + p.Name + " failed")
	case p.State == models.Canceled:
		r.headline.Importance = widget.LowImportance
		r.headline.SetText("Download of " + p.Name + " canceled")
	}
	r.figures.Importance = widget.MediumImportance
	if failed {
		r.figures.Importance = widget.DangerImportance
	}
	if ended { // the headline names the file
		r.figures.SetText(progressText(p))
	} else {
		r.figures.SetText(p.Name + " · " + progressText(p))
	}

	setVisible(r.pause, running)
	setVisible(r.resume, p.State == models.Paused || (failed && kept))
	setVisible(r.cancel, running || p.State == models.Paused || (failed && kept))
	setVisible(r.retry, failed && !kept)
	setVisible(r.spawn, p.State == models.Done)
	setVisible(r.dismiss, ended || p.State == models.Done)
}

// progressText is "12.3 MiB of 1.2 GiB · 5.1 MiB/s · 3m20s left", or the outcome.
func progressText(p models.Progress) string {
	size := models.FormatBytes(uint64(p.Received))
	if p.Total > 0 {
		size += " of " + models.FormatBytes(uint64(p.Total))
	}
	switch p.State {
	case models.Running:
		s := size
		if p.Total == 0 {
			s += " (the server did not say how much)"
		}
		if p.BytesPerSec > 0 {
			s += " · " + models.FormatBytes(uint64(p.BytesPerSec)) + "/s"
		}
		if p.ETA > 0 {
			s += " · " + p.ETA.Round(time.Second).String() + " left"
		}
		return s
	case models.Paused:
		return size + " · paused (the partial file is kept; Resume continues it, also after a restart)"
	case models.Failed:
		if p.CanResume {
			return size + " kept · " + failure(p.Err)
		}
		return failure(p.Err) + " Nothing was kept: Retry starts again, or fix the URL above."
	case models.Done:
		return "done: " + p.Path
	default:
		return "canceled; the partial file was deleted"
	}
}

// failure is a failed download's error as a sentence.
func failure(err error) string {
	if err == nil {
		return "failed."
	}
	s := err.Error()
	var he *models.HTTPStatusError
	if errors.As(err, &he) {
		s = fmt.Sprintf("the server answered %d %s", he.Status, strings.TrimPrefix(s, fmt.Sprintf("download %s: server answered %d ", he.URL, he.Status)))
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
