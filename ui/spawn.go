package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// spawnTimeout bounds one spawn from the dialog; a big model on a slow disk needs time.
const spawnTimeout = 5 * time.Minute

// spawnForm is the spawn dialog's state (UI thread only).
type spawnForm struct {
	u        *UI
	dlg      *dialog.CustomDialog
	modelSel *keySelectEntry
	wtype    *keyEntry
	ctxSize  *keyEntry
	threads  *keyEntry
	port     *keyEntry
	progress *widget.ProgressBar
	status   *widget.Label
	submit   *widget.Button
	cancel   *widget.Button
	busy     bool
	abort    context.CancelFunc
}

// openSpawnDialog shows the "Spawn worker" dialog, with modelPath filled in when given
// (the Models screen's Spawn button).
func (u *UI) openSpawnDialog(modelPath string) {
	f := &spawnForm{u: u}
	u.spawn = f
	s := u.core.Settings()

	choices := modelChoices(s)
	f.modelSel = newKeySelectEntry(choices, f.submitForm, f.close)
	f.modelSel.SetPlaceHolder("/path/to/model.gguf")
	// The model asked for, else the most recent one, else the first in the models
	// folder: with one model on disk, Spawn is one click (or Ctrl+N, Enter).
	if modelPath != "" {
		f.modelSel.SetText(modelPath)
	} else if len(choices) > 0 {
		f.modelSel.SetText(choices[0])
	}
	browse := widget.NewButton("Browse…", f.browse)

	f.wtype = newKeyEntry(f.submitForm, f.close)
	f.wtype.SetText(wire.DefaultWorkerType)
	f.ctxSize = newKeyEntry(f.submitForm, f.close)
	f.ctxSize.SetPlaceHolder("model default")
	f.threads = newKeyEntry(f.submitForm, f.close)
	f.threads.SetPlaceHolder("auto")
	f.port = newKeyEntry(f.submitForm, f.close)
	f.port.SetPlaceHolder(fmt.Sprintf("auto (%d–%d)", s.PortMin, s.PortMax))

	f.progress = widget.NewProgressBar()
	f.progress.Hide()
	f.status = widget.NewLabel("")
	f.status.Wrapping = fyne.TextWrapWord
	f.status.Hide()

	form := widget.NewForm(
		widget.NewFormItem("Model", container.NewBorder(nil, nil, nil, browse, f.modelSel)),
		widget.NewFormItem("Worker type", f.wtype),
		widget.NewFormItem("Context size", f.ctxSize),
		widget.NewFormItem("Threads", f.threads),
		widget.NewFormItem("Port", f.port),
	)
	f.submit = widget.NewButton("Spawn", f.submitForm)
	f.submit.Importance = widget.HighImportance
	f.cancel = widget.NewButton("Cancel", f.close)
	body := container.NewVBox(form, f.progress, f.status)
	f.dlg = dialog.NewCustomWithoutButtons("Spawn worker", body, u.win)
	f.dlg.SetButtons([]fyne.CanvasObject{f.cancel, f.submit})
	f.dlg.Resize(fyne.NewSize(620, 0))
	u.showDialog(f.dlg)
	u.win.Canvas().Focus(f.modelSel)
}

// modelChoices lists recent models first, then the .gguf files of the models folder.
func modelChoices(s app.Settings) []string {
	out := slices.Clone(s.RecentModels)
	if s.ModelsFolder != "" {
		matches, _ := filepath.Glob(filepath.Join(s.ModelsFolder, "*.gguf"))
		more, _ := filepath.Glob(filepath.Join(s.ModelsFolder, "*", "*.gguf"))
		for _, m := range append(matches, more...) {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

func (f *spawnForm) browse() {
	d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil {
			f.u.showError(err)
			return
		}
		if r == nil {
			return // cancelled
		}
		_ = r.Close()
		f.modelSel.SetText(r.URI().Path())
	}, f.u.win)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".gguf", ".GGUF"}))
	if dir := f.u.core.Settings().ModelsFolder; dir != "" {
		if l, err := storage.ListerForURI(storage.NewFileURI(dir)); err == nil {
			d.SetLocation(l)
		}
	}
	d.Resize(fyne.NewSize(760, 520))
	d.Show()
}

// request reads the form into a spawn request, naming the field that is wrong.
func (f *spawnForm) request() (hive.SpawnRequest, error) {
	req := hive.SpawnRequest{
		ModelPath:  strings.TrimSpace(f.modelSel.Text),
		WorkerType: strings.TrimSpace(f.wtype.Text),
		// No opt-out: while a Queen is set, the sync registers every live worker anyway;
		// this only registers it at once instead of at the next sync.
		RegisterWithQueen: true,
	}
	if req.ModelPath == "" {
		return req, &formError{"Model", "choose a .gguf model file (Browse…)"}
	}
	if !filepath.IsAbs(req.ModelPath) {
		abs, err := filepath.Abs(req.ModelPath)
		if err != nil {
			return req, &formError{"Model", "give the model's full path"}
		}
		req.ModelPath = abs
	}
	if st, err := os.Stat(req.ModelPath); err != nil {
		return req, &formError{"Model", fmt.Sprintf("%s cannot be read: %v", req.ModelPath, errors.Unwrap(err))}
	} else if st.IsDir() {
		return req, &formError{"Model", "that is a folder: choose a .gguf file in it"}
	}
	if req.WorkerType == "" {
		req.WorkerType = wire.DefaultWorkerType
	}
	if !wire.ValidWorkerID(req.WorkerType) {
		return req, &formError{"Worker type", "use letters, digits, '.', '-' or '_' (e.g. llm)"}
	}
	var err error
	if req.CtxSize, err = optionalInt(f.ctxSize.Text, 0, 1<<20); err != nil {
		return req, &formError{"Context size", "a number of tokens such as 2048, or empty for the model's default"}
	}
	if req.Threads, err = optionalInt(f.threads.Text, 0, 1024); err != nil {
		return req, &formError{"Threads", "a number such as 4, or empty for auto"}
	}
	if req.Port, err = optionalInt(f.port.Text, 1, 65535); err != nil {
		return req, &formError{"Port", "a port between 1 and 65535, or empty for auto"}
	}
	return req, nil
}

func optionalInt(text string, lo, hi int) (int, error) {
	text = strings.TrimSpace(text)
	if text == "" || strings.EqualFold(text, "auto") {
		return 0, nil
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not between %d and %d", text, lo, hi)
	}
	return n, nil
}

// submitForm validates the form and spawns in the background; the dialog shows the
// load progress, closes on success, and stays open with the error dialog on failure.
func (f *spawnForm) submitForm() {
	if f.busy {
		return
	}
	req, err := f.request()
	if err != nil {
		f.u.showError(err)
		return
	}
	f.setBusy(true)
	f.status.SetText("Starting " + wire.ModelName(req.ModelPath) + "…")
	f.u.core.RememberModel(req.ModelPath)
	ctx, cancel := context.WithTimeout(f.u.ctx, spawnTimeout)
	f.abort = cancel
	f.u.goBackground(func(context.Context) {
		defer cancel()
		entry, err := f.u.hive.Spawn(ctx, req, func(p hive.SpawnProgress) {
			f.u.do(func() { f.showProgress(p) })
		})
		f.u.do(func() {
			f.setBusy(false)
			if err != nil {
				f.status.SetText("Failed.")
				f.u.showError(fmt.Errorf("spawn %s: %w", filepath.Base(req.ModelPath), err))
				return
			}
			f.u.core.Logger().Info("worker spawned", "id", entry.ID, "port", entry.Port)
			f.dlg.Hide()
		})
	})
}

func (f *spawnForm) showProgress(p hive.SpawnProgress) {
	switch p.Phase {
	case hive.PhaseStarting:
		f.status.SetText(fmt.Sprintf("Started %s on port %d…", p.WorkerID, p.Port))
	case hive.PhaseRetrying:
		f.status.SetText(fmt.Sprintf("Port %d was taken; trying the next…", p.Port))
	case hive.PhaseLoading:
		f.status.SetText(fmt.Sprintf("Loading the model: %d%%", int(p.Fraction*100)))
		f.progress.SetValue(p.Fraction)
	case hive.PhaseReady:
		f.progress.SetValue(1)
		f.status.SetText(p.WorkerID + " is ready.")
	}
}

func (f *spawnForm) setBusy(busy bool) {
	f.busy = busy
	if busy {
		f.submit.Disable()
		f.progress.SetValue(0)
		f.progress.Show()
		f.status.Show()
		f.cancel.SetText("Cancel spawn")
		return
	}
	f.submit.Enable()
	f.progress.Hide()
	f.cancel.SetText("Cancel")
}

// close cancels a spawn in progress (the hive stops the half-started worker) or closes.
func (f *spawnForm) close() {
	if f.busy && f.abort != nil {
		f.abort()
		return
	}
	f.dlg.Hide()
}

// keyEntry is a one-line entry that submits on Enter and closes its dialog on Escape
// (a focused entry swallows keys, so the window-level Escape cannot see them).
type keyEntry struct {
	widget.Entry
	onSubmit, onEscape func()
}

func newKeyEntry(onSubmit, onEscape func()) *keyEntry {
	e := &keyEntry{onSubmit: onSubmit, onEscape: onEscape}
	e.ExtendBaseWidget(e)
	e.OnSubmitted = func(string) { onSubmit() }
	return e
}

// TypedKey adds Escape to the entry's keys.
func (e *keyEntry) TypedKey(ev *fyne.KeyEvent) {
	if ev.Name == fyne.KeyEscape && e.onEscape != nil {
		e.onEscape()
		return
	}
	e.Entry.TypedKey(ev)
}

// keySelectEntry is keyEntry's twin with a drop-down of choices (the model field).
type keySelectEntry struct {
	widget.SelectEntry
	onEscape func()
}

func newKeySelectEntry(options []string, onSubmit, onEscape func()) *keySelectEntry {
	e := &keySelectEntry{onEscape: onEscape}
	e.ExtendBaseWidget(e)
	e.Wrapping = fyne.TextWrap(fyne.TextTruncateClip)
	e.SetOptions(options)
	e.OnSubmitted = func(string) { onSubmit() }
	return e
}

// TypedKey adds Escape to the entry's keys.
func (e *keySelectEntry) TypedKey(ev *fyne.KeyEvent) {
	if ev.Name == fyne.KeyEscape && e.onEscape != nil {
		e.onEscape()
		return
	}
	e.SelectEntry.TypedKey(ev)
}
