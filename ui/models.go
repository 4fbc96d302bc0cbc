package ui

import (
	"context"
	"fmt"
	"image/color"
	"net/url"
	"path/filepath"
	"sync/atomic"
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

// watchQuiet is how long the models folder must be quiet before the list is read
// again after files were copied in, changed or removed.
const watchQuiet = 300 * time.Millisecond

// modelsFolder is the models folder of the settings.
func (u *UI) modelsFolder() string {
	if u.core != nil && u.core.Settings().ModelsFolder != "" {
		return u.core.Settings().ModelsFolder
	}
	return dirs.Models()
}

// openModelLibrary opens the library on the models folder of the settings.
func (u *UI) openModelLibrary() (*models.Library, error) {
	return models.OpenLibrary(u.modelsFolder(), filepath.Join(dirs.Data(), "models.json"))
}

// modelsTab builds the Models screen on the models folder of the settings.
func (u *UI) modelsTab() fyne.CanvasObject {
	lib, err := u.openModelLibrary()
	if err != nil {
		msg := widget.NewLabel("The models folder cannot be used: " + err.Error())
		msg.Wrapping = fyne.TextWrapWord
		return msg
	}
	// The Hub's client sends HF_TOKEN to the Hub's host only (gated models), never to
	// the storage host a download is redirected to.
	v := newModelsView(u, lib, models.NewDownloader(lib.Dir(), models.NewHubFromEnv().HTTPClient()), u.modelInUse)
	if u.core != nil {
		v.remember = u.core.RememberModel
	}
	v.restorePending()
	return v
}

// addModelFile puts a file picked anywhere (the spawn dialog's Browse…) into the
// library, so the Models screen lists it, and first in the recent models.
func (u *UI) addModelFile(path string) error {
	lib, err := u.openModelLibrary()
	if err != nil {
		return err
	}
	if err := lib.Add(path); err != nil {
		return err
	}
	if u.core != nil {
		u.core.RememberModel(path)
	}
	return nil
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

// memoryCell is a row's estimate: "" while it is computed.
type memoryCell struct{ text, tip string }

// modelsView is the Models screen; its fields are touched on the UI thread only.
type modelsView struct {
	widget.BaseWidget
	u     *UI
	lib   *models.Library
	dl    *models.Downloader
	inUse func(path string) bool
	// remember puts a file picked with Browse… first in the recent models, which the
	// spawn dialog offers; nil where there is no app core (tests).
	remember func(path string)

	infos     []models.Info
	loaded    bool                  // the first listing arrived
	loads     atomic.Uint64         // the latest listing asked for; older ones are dropped
	estimates map[string]memoryCell // path → estimate; reset by each listing
	estCache  models.EstimateCache
	table     *modelTable
	tableGen  int // bumped when the column widths change

	list      *widget.List
	header    *fyne.Container // the column headers
	headerRow fyne.CanvasObject
	empty     fyne.CanvasObject // what to do when there are no models
	url, sum  *widget.Entry
	downloads *fyne.Container
	rows      map[string]*downloadRow
	content   fyne.CanvasObject
}

func newModelsView(u *UI, lib *models.Library, dl *models.Downloader, inUse func(string) bool) *modelsView {
	v := &modelsView{u: u, lib: lib, dl: dl, inUse: inUse, rows: map[string]*downloadRow{},
		estimates: map[string]memoryCell{}, table: newModelTable()}
	v.ExtendBaseWidget(v)

	browse := widget.NewButtonWithIcon("Browse…", theme.FolderOpenIcon(), func() { v.chooseFile() })
	refresh := widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), func() { v.reload() })
	folder := newCellLabel(u.tips, "Models folder: "+lib.Dir(),
		"Models folder: "+lib.Dir()+"\n.gguf files copied here show up by themselves.", fyne.TextStyle{})
	folder.Importance = widget.LowImportance
	toolbar := container.NewBorder(nil, nil, container.NewHBox(u.discoverButton(), browse, refresh), nil, folder)

	v.url = widget.NewEntry()
	v.url.SetPlaceHolder("URL of a .gguf file (…/resolve/main/FILE.gguf), or a path")
	v.url.OnSubmitted = func(string) { v.startDownload() }
	v.sum = widget.NewEntry()
	v.sum.SetPlaceHolder("sha256 (optional)")
	v.sum.OnSubmitted = func(string) { v.startDownload() }
	get := widget.NewButtonWithIcon("Download", theme.DownloadIcon(), func() { v.startDownload() })
	get.Importance = widget.HighImportance
	sumBox := container.NewGridWrap(fyne.NewSize(170, v.sum.MinSize().Height), v.sum)
	dlBar := container.NewBorder(nil, nil, nil, container.NewHBox(sumBox, get), v.url)
	v.downloads = container.NewVBox()

	v.header = container.New(tableLayout{v.table})
	for _, c := range modelCols {
		v.header.Add(newCellLabel(u.tips, c.header, c.tip, fyne.TextStyle{Bold: true}))
	}
	// The header leaves room for the rows' buttons, so its columns sit over theirs.
	buttons := canvas.NewRectangle(color.Transparent)
	buttons.SetMinSize(v.rowButtons(nil, nil).MinSize())
	v.headerRow = container.NewBorder(nil, nil, nil, buttons, v.header)

	v.list = widget.NewList(func() int { return len(v.infos) }, v.createRow, v.updateRow)
	v.list.OnSelected = func(widget.ListItemID) { v.list.UnselectAll() }
	v.empty = v.emptyState()
	v.empty.Hide()

	top := container.NewVBox(toolbar, dlBar, v.downloads, v.headerRow)
	v.content = container.NewBorder(top, nil, nil, nil, container.NewStack(v.list, v.empty))
	v.reload()
	v.watch()
	return v
}

// CreateRenderer draws the screen.
func (v *modelsView) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(v.content) }

// Show reads the folder again when the screen comes back into view: a file may have
// been added from the spawn dialog meanwhile. (The tabs call Show on every layout, so
// only a hidden screen counts.)
func (v *modelsView) Show() {
	if !v.Visible() {
		v.reload()
	}
	v.BaseWidget.Show()
}

// emptyState says what to do when there are no models yet.
func (v *modelsView) emptyState() fyne.CanvasObject {
	title := widget.NewLabelWithStyle("No models yet", fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	text := widget.NewLabel("Find one on Hugging Face with Discover…, paste the URL of a .gguf file above and " +
		"press Download, pick a file on this computer with Browse…, or copy .gguf files into the models " +
		"folder: they show up here by themselves.")
	text.Wrapping = fyne.TextWrapWord
	text.Alignment = fyne.TextAlignCenter
	browse := widget.NewButtonWithIcon("Browse…", theme.FolderOpenIcon(), func() { v.chooseFile() })
	open := widget.NewButtonWithIcon("Open models folder", theme.FolderIcon(), func() { v.openFolder() })
	box := container.NewVBox(title, text, container.NewCenter(container.NewHBox(v.u.discoverButton(), browse, open)))
	return container.New(readableLayout{maxWidth: 560}, box)
}

// readableLayout centres its content at most maxWidth wide, in the upper third, so a
// wrapped text keeps readable lines in a wide window.
type readableLayout struct{ maxWidth float32 }

// Layout places the content.
func (l readableLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	w := min(size.Width, l.maxWidth)
	for _, o := range objs {
		o.Resize(fyne.NewSize(w, o.MinSize().Height)) // a wrapped label measures at its width
		h := o.MinSize().Height
		o.Resize(fyne.NewSize(w, h))
		o.Move(fyne.NewPos((size.Width-w)/2, max(0, (size.Height-h)/3)))
	}
}

// MinSize asks for no width, so the window can be narrow.
func (l readableLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var h float32
	for _, o := range objs {
		h = max(h, o.MinSize().Height)
	}
	return fyne.NewSize(0, h)
}

// reload reads the library off the UI thread (metadata is cached per file, so this is
// cheap) and shows it.
func (v *modelsView) reload() {
	v.u.goBackground(func(context.Context) { v.load() })
}

// load lists the library on the calling goroutine and hands the list to the UI thread;
// a listing overtaken by a newer one is dropped.
func (v *modelsView) load() {
	gen := v.loads.Add(1)
	infos := v.lib.List()
	v.u.do(func() {
		if gen == v.loads.Load() {
			v.show(infos)
		}
	})
}

// show puts a listing on screen.
func (v *modelsView) show(infos []models.Info) {
	v.infos, v.loaded = infos, true
	// Files may have changed: ask again (the cache answers unchanged ones at once).
	clear(v.estimates)
	v.remeasure()
	none := len(infos) == 0
	setVisible(v.empty, none)
	setVisible(v.list, !none)
	setVisible(v.headerRow, !none)
	v.list.Refresh()
}

// watch follows the models folder: files copied in, changed or removed show without
// Refresh. The watcher ends with the UI.
func (v *modelsView) watch() {
	v.u.goBackground(func(ctx context.Context) {
		if err := models.Watch(ctx, v.lib.Dir(), watchQuiet, v.load); err != nil && v.u.core != nil {
			v.u.core.Logger().Warn("models folder not watched", "err", err)
		}
	})
}

// remeasure sizes the columns for the texts now shown.
func (v *modelsView) remeasure() {
	rows := make([][]string, 0, len(v.infos))
	for _, info := range v.infos {
		if info.Err != nil {
			continue
		}
		cells := modelCells(info)
		cells[modelColMemory] = v.estimates[info.Path].text
		rows = append(rows, cells)
	}
	v.table.measure(rows)
	v.tableGen++
	if size := v.header.Size(); size.Width > 0 {
		v.header.Layout.Layout(v.header.Objects, size)
	}
}

// modelRow is one line of the models list.
type modelRow struct {
	widget.BaseWidget
	cells    []*cellLabel
	grid     *fyne.Container
	reason   *cellLabel // an unreadable file's name and why, over the whole row
	spawn    *widget.Button
	trash    *tipButton
	tableGen int
	content  fyne.CanvasObject
}

// CreateRenderer draws the row.
func (r *modelRow) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(r.content) }

func (v *modelsView) createRow() fyne.CanvasObject {
	r := &modelRow{reason: newCellLabel(v.u.tips, "", "", fyne.TextStyle{}), tableGen: v.tableGen}
	r.grid = container.New(tableLayout{v.table})
	for range modelCols {
		l := newCellLabel(v.u.tips, "", "", fyne.TextStyle{})
		r.cells = append(r.cells, l)
		r.grid.Add(l)
	}
	r.reason.Importance = widget.DangerImportance
	r.reason.Hide()
	buttons := v.rowButtons(&r.spawn, &r.trash)
	r.content = container.NewBorder(nil, nil, nil, buttons, container.NewStack(r.grid, r.reason))
	r.ExtendBaseWidget(r)
	return r
}

func (v *modelsView) updateRow(i widget.ListItemID, o fyne.CanvasObject) {
	r, ok := o.(*modelRow)
	if !ok || i >= len(v.infos) {
		return
	}
	info := v.infos[i]
	path := info.Path
	if info.Err != nil {
		r.reason.set(unreadableText(info), info.Err.Error())
		r.grid.Hide()
		r.reason.Show()
		r.spawn.Disable()
	} else {
		mem := v.estimateCell(info)
		for j, text := range modelCells(info) {
			tip := ""
			switch j {
			case modelColName:
				tip = modelDetails(info, mem.tip)
			case modelColMemory:
				text, tip = mem.text, mem.tip
			}
			r.cells[j].set(text, tip)
		}
		r.reason.Hide()
		r.grid.Show()
		r.spawn.Enable()
	}
	if r.tableGen != v.tableGen { // the columns moved: place the cells again
		r.tableGen = v.tableGen
		r.grid.Layout.Layout(r.grid.Objects, r.grid.Size())
	}
	if filepath.Dir(path) == filepath.Clean(v.lib.Dir()) {
		r.trash.SetTip("Delete the file from disk (asks first)")
	} else {
		r.trash.SetTip("Remove from the library (asks first; the file stays where it is)")
	}
	r.spawn.OnTapped = func() { v.u.openSpawnDialog(path) }
	r.trash.OnTapped = func() { v.confirmDelete(path) }
}

// rowButtons makes a row's Spawn and delete buttons, storing them where asked (when
// not nil); the header measures a pair of its own.
func (v *modelsView) rowButtons(spawn **widget.Button, trash **tipButton) *fyne.Container {
	s := widget.NewButtonWithIcon("Spawn", theme.MediaPlayIcon(), nil)
	t := newTipButton(v.u.tips, "", theme.DeleteIcon(), "Delete (asks first)", nil)
	if spawn != nil {
		*spawn, *trash = s, t
	}
	return container.NewHBox(s, t)
}

// estimateCell is the memory a worker needs for info at its default context, "…" while
// it is computed off the UI thread (once per file version: see models.EstimateCache).
func (v *modelsView) estimateCell(info models.Info) memoryCell {
	if c, ok := v.estimates[info.Path]; ok {
		if c.text == "" {
			return memoryCell{text: "…"}
		}
		return c
	}
	v.estimates[info.Path] = memoryCell{} // asked
	path := info.Path
	v.u.goBackground(func(context.Context) {
		e, err := v.estCache.Estimate(path, models.EstimateOptions{})
		text, tip := estimateSummary(info, e, err)
		v.u.do(func() {
			if _, ok := v.estimates[path]; ok { // not reset by a reload meanwhile
				v.estimates[path] = memoryCell{text, tip}
				v.remeasure()
				v.list.Refresh()
			}
		})
	})
	return memoryCell{text: "…"}
}

// chooseFile picks a model file anywhere and adds it to the library.
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
		v.addFile(path)
	}, v.u.win)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".gguf", ".GGUF"}))
	d.Resize(fyne.NewSize(760, 480))
	v.u.showDialog(d)
}

// addFile puts a file into the library and first in the recent models.
func (v *modelsView) addFile(path string) {
	if err := v.lib.Add(path); err != nil {
		v.u.showError(err)
		return
	}
	if v.remember != nil {
		v.remember(path)
	}
	v.reload()
}

// openFolder shows the models folder in the file manager.
func (v *modelsView) openFolder() {
	u := &url.URL{Scheme: "file", Path: v.lib.Dir()}
	if err := v.u.app.OpenURL(u); err != nil {
		v.u.showError(fmt.Errorf("open the models folder %s: %w", v.lib.Dir(), err))
	}
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

func setVisible(o fyne.CanvasObject, on bool) {
	if on == o.Visible() {
		return
	}
	if on {
		o.Show()
	} else {
		o.Hide()
	}
}
