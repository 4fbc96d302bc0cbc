package ui

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"path/filepath"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/models"
)

// modelsTab builds the Models screen on the models folder of the settings.
func (u *UI) modelsTab() fyne.CanvasObject {
	folder := dirs.Models()
	if u.core != nil && u.core.Settings().ModelsFolder != "" {
		folder = u.core.Settings().ModelsFolder
	}
	lib, err := models.OpenLibrary(folder, filepath.Join(dirs.Data(), "models.json"))
	if err != nil {
		return widget.NewLabel("The models folder cannot be used: " + err.Error())
	}
	v := newModelsView(u, lib, models.NewDownloader(folder, nil), u.modelInUse)
	v.restorePending()
	return v
}

// modelInUse reports whether a live local worker serves the model at path.
func (u *UI) modelInUse(path string) bool {
	if u.hive == nil {
		return false
	}
	for _, e := range u.hive.List() {
		if e.State == hive.StateExited || e.State == hive.StateCrashed {
			continue
		}
		if a, err := filepath.Abs(e.ModelPath); err == nil && a == path {
			return true
		}
	}
	return false
}

// Columns of the models list, and the share of the width each takes. The estimate is
// the last column, filled in off the UI thread.
var (
	modelCols   = []string{"Model", "Architecture", "Parameters", "Quantization", "Context", "File size", "Chat template", "Memory: CPU / GPU"}
	modelWidths = columnsLayout{2, 1, 1, 1.15, 0.8, 0.9, 1.3, 2.4}
)

// modelsView is the Models screen; its fields are touched on the UI thread only.
type modelsView struct {
	widget.BaseWidget
	u     *UI
	lib   *models.Library
	dl    *models.Downloader
	inUse func(path string) bool

	infos     []models.Info
	estimates map[string]string // path → estimate cell; "" while computing. Reset by reload
	estCache  models.EstimateCache
	list      *widget.List
	folder    *widget.Label
	url, sum  *widget.Entry
	downloads *fyne.Container
	rows      map[string]*downloadRow
	content   fyne.CanvasObject
}

func newModelsView(u *UI, lib *models.Library, dl *models.Downloader, inUse func(string) bool) *modelsView {
	v := &modelsView{u: u, lib: lib, dl: dl, inUse: inUse, rows: map[string]*downloadRow{},
		estimates: map[string]string{}}
	v.ExtendBaseWidget(v)

	v.folder = widget.NewLabel("Models folder: " + lib.Dir())
	v.folder.Importance = widget.LowImportance
	add := widget.NewButtonWithIcon("Add file…", theme.FolderOpenIcon(), func() { v.chooseFile() })
	refresh := widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), func() { v.reload() })

	v.url = widget.NewEntry()
	v.url.SetPlaceHolder("https://huggingface.co/ORG/REPO/resolve/main/FILE.gguf")
	v.sum = widget.NewEntry()
	v.sum.SetPlaceHolder("sha256 (optional)")
	get := widget.NewButtonWithIcon("Download", theme.DownloadIcon(), func() { v.startDownload() })
	get.Importance = widget.HighImportance
	dlBar := container.NewBorder(nil, nil, widget.NewLabel("Download from URL"), get,
		container.NewGridWithColumns(2, v.url, v.sum))
	v.downloads = container.NewVBox()

	// Headers truncate like the cells: at 800 px wide they must not run into each other.
	header := container.New(modelWidths)
	for _, c := range modelCols {
		l := widget.NewLabelWithStyle(c, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		l.Truncation = fyne.TextTruncateEllipsis
		header.Add(l)
	}
	v.list = widget.NewList(func() int { return len(v.infos) }, v.createRow, v.updateRow)
	v.list.OnSelected = func(widget.ListItemID) { v.list.UnselectAll() }

	// The header leaves room for the rows' buttons, so its columns sit over theirs.
	buttons := canvas.NewRectangle(color.Transparent)
	buttons.SetMinSize(rowButtons(nil, nil).MinSize())
	top := container.NewVBox(container.NewHBox(add, refresh, v.folder), dlBar, v.downloads,
		container.NewBorder(nil, nil, nil, buttons, header))
	v.content = container.NewBorder(top, nil, nil, nil, v.list)
	v.reload()
	return v
}

// CreateRenderer draws the screen.
func (v *modelsView) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(v.content) }

// reload reads the library (metadata is cached per file, so this is cheap) off the UI
// thread and shows it.
func (v *modelsView) reload() {
	v.u.goBackground(func(context.Context) {
		infos := v.lib.List()
		v.u.do(func() {
			v.infos = infos
			// Files may have changed: ask again (the cache answers unchanged ones at once).
			clear(v.estimates)
			v.list.Refresh()
		})
	})
}

// modelRow is one line of the models list.
type modelRow struct {
	widget.BaseWidget
	cells        []*widget.Label
	reason       *widget.Label
	spawn, trash *widget.Button
	content      fyne.CanvasObject
}

// CreateRenderer draws the row.
func (r *modelRow) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(r.content) }

func (v *modelsView) createRow() fyne.CanvasObject {
	r := &modelRow{reason: widget.NewLabel("")}
	grid := container.New(modelWidths)
	for range modelCols {
		l := widget.NewLabel("")
		l.Truncation = fyne.TextTruncateEllipsis
		r.cells = append(r.cells, l)
		grid.Add(l)
	}
	r.reason.Importance = widget.DangerImportance
	r.reason.Truncation = fyne.TextTruncateEllipsis
	buttons := rowButtons(&r.spawn, &r.trash)
	body := container.NewStack(grid, r.reason)
	r.content = container.NewBorder(nil, nil, nil, buttons, body)
	r.ExtendBaseWidget(r)
	return r
}

func (v *modelsView) updateRow(i widget.ListItemID, o fyne.CanvasObject) {
	r, ok := o.(*modelRow)
	if !ok || i >= len(v.infos) {
		return
	}
	info := v.infos[i]
	for j, text := range modelCells(info) {
		r.cells[j].SetText(text)
	}
	r.cells[len(modelCols)-1].SetText(v.estimateCell(info))
	if info.Err != nil {
		for _, l := range r.cells[1:] {
			l.Hide()
		}
		r.reason.SetText("        " + info.Name + " — unreadable: " + info.Err.Error())
		r.reason.Show()
		r.cells[0].Hide()
		r.spawn.Disable()
	} else {
		for _, l := range r.cells {
			l.Show()
		}
		r.reason.Hide()
		r.spawn.Enable()
	}
	path := info.Path
	r.spawn.OnTapped = func() { v.u.openSpawnDialog(path) }
	r.trash.OnTapped = func() { v.confirmDelete(path) }
}

// rowButtons makes a row's Spawn and delete buttons, storing them where asked (when
// not nil); the header measures a pair of its own.
func rowButtons(spawn, trash **widget.Button) *fyne.Container {
	s := widget.NewButtonWithIcon("Spawn", theme.MediaPlayIcon(), nil)
	t := widget.NewButtonWithIcon("", theme.DeleteIcon(), nil)
	if spawn != nil {
		*spawn, *trash = s, t
	}
	return container.NewHBox(s, t)
}

// modelCells is one row of the table as text, but for the estimate (estimateCell).
func modelCells(info models.Info) []string {
	yesNo := "no (plain prompt)"
	if info.HasChatTemplate {
		yesNo = "yes"
	}
	return []string{info.Name, info.Architecture, info.ParametersText, info.Quantization,
		fmt.Sprint(info.ContextLength), models.FormatBytes(uint64(info.FileSize)), yesNo}
}

// estimateCell is the memory a worker needs for info at its default context, "…" while
// it is computed off the UI thread (once per file version: see models.EstimateCache).
func (v *modelsView) estimateCell(info models.Info) string {
	if info.Err != nil {
		return ""
	}
	if text, ok := v.estimates[info.Path]; ok {
		if text == "" {
			return "…"
		}
		return text
	}
	v.estimates[info.Path] = "" // asked
	path := info.Path
	v.u.goBackground(func(context.Context) {
		e, err := v.estCache.Estimate(path, models.EstimateOptions{})
		text := estimateSummary(info, e, err)
		v.u.do(func() {
			if _, ok := v.estimates[path]; ok { // not reset by a reload meanwhile
				v.estimates[path] = text
				v.list.Refresh()
			}
		})
	})
	return "…"
}

// estimateSummary is "19.1 MiB / 38.7 MiB": the RAM to run on the CPU, or the device
// memory to offload every layer, at the worker's default context; "… @ 4096" when that
// is not the training context the Context column shows.
func estimateSummary(info models.Info, e models.Estimate, err error) string {
	if err != nil {
		return "?"
	}
	s := models.FormatBytes(e.CPUOnlyRAM) + " / " + models.FormatBytes(e.FullOffloadVRAM)
	if e.CtxSize != info.ContextLength {
		s += fmt.Sprintf(" @ %d", e.CtxSize)
	}
	return s
}

// columnsLayout lays cells out side by side, each taking its weight's share of the
// width. Its minimum width is nothing, so a narrow window truncates the cells instead
// of pushing them over each other as an equal grid of untruncated headers would.
type columnsLayout []float32

// Layout places the cells.
func (w columnsLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	var total float32
	for _, x := range w {
		total += x
	}
	pad := theme.Padding()
	avail := size.Width - pad*float32(len(objs)-1)
	x := float32(0)
	for i, o := range objs {
		width := avail * w[min(i, len(w)-1)] / total
		o.Move(fyne.NewPos(x, 0))
		o.Resize(fyne.NewSize(width, size.Height))
		x += width + pad
	}
}

// MinSize is the tallest cell's height.
func (w columnsLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var h float32
	for _, o := range objs {
		h = max(h, o.MinSize().Height)
	}
	return fyne.NewSize(0, h)
}

func (v *modelsView) chooseFile() {
	d := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil {
			v.u.showError(err)
			return
		}
		if rc == nil {
			return
		}
		path := rc.URI().Path()
		rc.Close()
		if err := v.lib.Add(path); err != nil {
			v.u.showError(err)
			return
		}
		v.reload()
	}, v.u.win)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".gguf", ".GGUF"}))
	v.u.showDialog(d)
}

func (v *modelsView) confirmDelete(path string) {
	if v.inUse != nil && v.inUse(path) {
		v.u.showError(fmt.Errorf("delete %s: %w: stop the worker that serves it first", filepath.Base(path), models.ErrInUse))
		return
	}
	msg := fmt.Sprintf("Delete %s from disk?", path)
	if filepath.Dir(path) != filepath.Clean(v.lib.Dir()) {
		msg = fmt.Sprintf("Remove %s from the library? The file stays where it is.", path)
	}
	d := dialog.NewConfirm("Delete model", msg, func(ok bool) {
		if !ok {
			return
		}
		if _, err := v.lib.Delete(path, v.inUse); err != nil {
			v.u.showError(err)
		}
		v.reload()
	}, v.u.win)
	v.u.showDialog(d)
}

// startDownload starts the URL box's download.
func (v *modelsView) startDownload() {
	req := models.Request{URL: strings.TrimSpace(v.url.Text), SHA256: strings.TrimSpace(v.sum.Text)}
	d, err := v.dl.Start(req, v.progressFunc())
	if err != nil {
		v.u.showError(err)
		return
	}
	v.url.SetText("")
	v.sum.SetText("")
	v.addDownload(d)
}

// restorePending shows the partial downloads left by the last run, paused.
func (v *modelsView) restorePending() {
	pending, err := v.dl.Pending(v.progressFunc())
	if err != nil {
		v.u.showError(err)
		return
	}
	for _, d := range pending {
		v.addDownload(d)
	}
}

// progressFunc hops each progress report onto the UI thread.
func (v *modelsView) progressFunc() func(models.Progress) {
	return func(p models.Progress) {
		v.u.do(func() {
			if r := v.rows[p.Name]; r != nil {
				r.show(p)
			}
			if p.State == models.Done {
				v.reload()
			}
		})
	}
}

func (v *modelsView) addDownload(d *models.Download) {
	if old := v.rows[d.Name()]; old != nil {
		v.downloads.Remove(old.box)
	}
	r := newDownloadRow(v, d)
	v.rows[d.Name()] = r
	v.downloads.Add(r.box)
	r.show(d.Progress())
}

// downloadRow is one download: name, bar, figures, pause/resume, cancel.
type downloadRow struct {
	box           *fyne.Container
	bar           *widget.ProgressBar
	figures       *widget.Label
	pause, resume *widget.Button
	cancel, close *widget.Button
}

func newDownloadRow(v *modelsView, d *models.Download) *downloadRow {
	r := &downloadRow{bar: widget.NewProgressBar(), figures: widget.NewLabel("")}
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
	r.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() {
		v.u.goBackground(func(context.Context) { d.Cancel() })
	})
	r.close = widget.NewButtonWithIcon("", theme.WindowCloseIcon(), func() {
		v.downloads.Remove(r.box)
		delete(v.rows, d.Name())
	})
	name := widget.NewLabelWithStyle(d.Name(), fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	r.box = container.NewBorder(nil, r.figures, name, container.NewHBox(r.pause, r.resume, r.cancel, r.close), r.bar)
	return r
}

func (r *downloadRow) show(p models.Progress) {
	if p.Total > 0 {
		r.bar.SetValue(float64(p.Received) / float64(p.Total))
	}
	r.figures.SetText(progressText(p))
	live := p.State == models.Running
	resumable := p.State == models.Paused || (p.State == models.Failed && !errors.As(p.Err, new(*models.ChecksumError)) && !errors.Is(p.Err, models.ErrNotGGUF))
	setVisible(r.pause, live)
	setVisible(r.resume, resumable)
	setVisible(r.cancel, live || p.State == models.Paused || p.State == models.Failed)
	setVisible(r.close, !live && !resumable)
}

func setVisible(o fyne.CanvasObject, on bool) {
	if on {
		o.Show()
	} else {
		o.Hide()
	}
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
		return size + " · " + p.Err.Error()
	case models.Done:
		return "done: " + p.Path
	default:
		return "canceled"
	}
}
