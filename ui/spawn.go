package ui

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// spawnTimeout bounds one spawn from the dialog; a big model on a slow disk needs time.
const spawnTimeout = 5 * time.Minute

// spawnForm is the spawn dialog's state (UI thread only).
type spawnForm struct {
	u        *UI
	shared   *spawnShared
	dlg      *dialog.CustomDialog
	modelSel *keySelectEntry
	estimate *widget.Label // the memory the chosen model, context and device need
	device   *widget.Select
	devNote  *widget.Label // why the devices are unknown, while they are
	layers   *keyEntry     // GPU layers: empty (the worker's default), auto, or a count
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

	cpu    *models.Device  // the CPU as the probe reports it, for free RAM; nil if not
	gpus   []models.Device // the offload devices, in the device choice's order after "CPU only"
	known  bool            // the probe answered: no GPU listed means there is none
	estGen int             // the latest estimate asked for; older answers are dropped
}

// spawnShared outlives one spawn dialog: the device probe runs once per app, and the
// estimates are cached per file. Each dialog takes it over from the one before (u.spawn).
type spawnShared struct {
	probed    chan struct{} // closed when devs and probeErr are set
	devs      []models.Device
	probeErr  error
	estimates models.EstimateCache
}

// deviceProbeTimeout bounds `beekeeper devices --json`: loading a GPU backend (CUDA,
// Vulkan) takes seconds on a cold start.
const deviceProbeTimeout = 30 * time.Second

// spawnState returns the spawn dialogs' shared state, starting the device probe the
// first time.
func (u *UI) spawnState() *spawnShared {
	if u.spawn != nil && u.spawn.shared != nil {
		return u.spawn.shared
	}
	sh := &spawnShared{probed: make(chan struct{})}
	u.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, deviceProbeTimeout)
		defer cancel()
		sh.devs, sh.probeErr = u.core.ProbeDevices(ctx)
		close(sh.probed)
	})
	return sh
}

// openSpawnDialog shows the "Spawn worker" dialog, with modelPath filled in when given
// (the Models screen's Spawn button).
func (u *UI) openSpawnDialog(modelPath string) {
	f := &spawnForm{u: u, shared: u.spawnState()}
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
	// What the type means: a label the Queen routes by; llm is the only kind Beekeeper
	// runs today, and other names only matter to a Queen that routes by type.
	typeItem := widget.NewFormItem("Worker type", f.wtype)
	typeItem.HintText = "llm: a text model behind the OpenAI API. A label the Queen routes by; keep llm unless your Queen uses others."
	f.ctxSize = newKeyEntry(f.submitForm, f.close)
	f.ctxSize.SetPlaceHolder("model default")
	f.threads = newKeyEntry(f.submitForm, f.close)
	f.threads.SetPlaceHolder("auto")
	f.port = newKeyEntry(f.submitForm, f.close)
	f.port.SetPlaceHolder(fmt.Sprintf("auto (%d–%d)", s.PortMin, s.PortMax))

	f.estimate = widget.NewLabel("")
	f.estimate.Wrapping = fyne.TextWrapWord
	f.device = widget.NewSelect([]string{cpuOnly}, nil)
	f.device.SetSelectedIndex(0)
	f.devNote = widget.NewLabel("devices: probing…")
	f.devNote.Importance = widget.LowImportance
	f.devNote.Wrapping = fyne.TextWrapWord
	f.layers = newKeyEntry(f.submitForm, f.close)
	f.layers.SetPlaceHolder("auto")
	layersBox := container.NewGridWrap(fyne.NewSize(90, f.layers.MinSize().Height), f.layers)
	deviceRow := container.NewBorder(nil, nil, nil,
		container.NewHBox(widget.NewLabel("GPU layers"), layersBox), f.device)

	f.progress = widget.NewProgressBar()
	f.progress.Hide()
	f.status = widget.NewLabel("")
	f.status.Wrapping = fyne.TextWrapWord
	f.status.Hide()

	form := widget.NewForm(
		widget.NewFormItem("Model", container.NewBorder(nil, nil, nil, browse, f.modelSel)),
		widget.NewFormItem("Memory", f.estimate),
		widget.NewFormItem("Device", container.NewVBox(deviceRow, f.devNote)),
		widget.NewFormItem("Context size", f.ctxSize),
		typeItem,
		widget.NewFormItem("Threads", f.threads),
		widget.NewFormItem("Port", f.port),
	)
	f.submit = widget.NewButton("Spawn", f.submitForm)
	f.submit.Importance = widget.HighImportance
	f.cancel = widget.NewButton("Cancel", f.close)
	body := container.NewVBox(form, f.progress, f.status)
	f.dlg = dialog.NewCustomWithoutButtons("Spawn worker", body, u.win)
	f.dlg.SetButtons([]fyne.CanvasObject{f.cancel, f.submit})

	f.modelSel.OnChanged = func(string) { f.updateEstimate() }
	f.ctxSize.OnChanged = func(string) { f.updateEstimate() }
	f.layers.OnChanged = func(string) { f.updateEstimate() }
	f.device.OnChanged = func(string) { f.deviceChanged() }
	select {
	case <-f.shared.probed:
		f.showDevices()
	default:
		f.updateEstimate()
		sh := f.shared
		u.goBackground(func(ctx context.Context) {
			select {
			case <-sh.probed:
				u.do(f.showDevices)
			case <-ctx.Done():
			}
		})
	}
	f.relayout()
	u.showDialog(f.dlg)
	u.win.Canvas().Focus(f.modelSel)
}

// relayout fits the dialog to its content again after a line grew or shrank (the
// memory line wraps, the device note comes and goes).
func (f *spawnForm) relayout() { f.dlg.Resize(fyne.NewSize(620, 0)) }

// cpuOnly is the device choice that offloads nothing.
const cpuOnly = "CPU only"

// showDevices fills the device choice from the probe.
func (f *spawnForm) showDevices() {
	sh := f.shared
	f.cpu, f.gpus, f.known = nil, nil, sh.probeErr == nil
	for _, d := range sh.devs {
		switch {
		case d.Offloads():
			f.gpus = append(f.gpus, d)
		case d.Type == "cpu" && f.cpu == nil:
			f.cpu = &d
		}
	}
	cpu := cpuOnly
	if f.cpu != nil && f.cpu.FreeBytes > 0 {
		cpu += " · " + models.FormatBytes(f.cpu.FreeBytes) + " RAM free"
	}
	options := []string{cpu}
	for _, d := range f.gpus {
		options = append(options, deviceLabel(d))
	}
	switch {
	case sh.probeErr != nil:
		f.devNote.SetText("devices: unknown (" + sh.probeErr.Error() + ")")
		f.devNote.Show()
	case len(f.gpus) == 0:
		f.devNote.SetText("no GPU in this llama.cpp runtime: layers run on the CPU")
		f.devNote.Show()
	default:
		f.devNote.Hide()
	}
	f.device.SetOptions(options)
	// The GPU with the most free memory, the one the worker's auto picks.
	best := 0 // CPU only, without a GPU
	for i, d := range f.gpus {
		if best == 0 || d.FreeBytes > f.gpus[best-1].FreeBytes {
			best = i + 1
		}
	}
	f.device.SetSelectedIndex(best) // calls deviceChanged
	f.relayout()
}

// deviceLabel is "Vulkan0 · NVIDIA GeForce RTX 3060 · 7.5 GiB free".
func deviceLabel(d models.Device) string {
	s := d.Name
	if d.Description != "" && d.Description != d.Name {
		s += " · " + d.Description
	}
	return s + " · " + models.FormatBytes(d.FreeBytes) + " free"
}

// chosenGPU is the offload device chosen, nil for CPU only.
func (f *spawnForm) chosenGPU() *models.Device {
	if i := f.device.SelectedIndex(); i > 0 && i <= len(f.gpus) {
		return &f.gpus[i-1]
	}
	return nil
}

// deviceChanged turns the GPU layers off for CPU only, unless the devices are unknown
// (the user may know of a GPU the probe could not see).
func (f *spawnForm) deviceChanged() {
	if f.chosenGPU() == nil && f.known {
		f.layers.Disable()
		f.layers.SetPlaceHolder("none")
	} else {
		f.layers.Enable()
		f.layers.SetPlaceHolder("auto")
	}
	f.updateEstimate()
}

// gpuLayers is the --gpu-layers the form asks for: "" for the worker's default, auto
// (also when there is no GPU), "0" for CPU only when there is one, "auto", "all", or a
// count.
func (f *spawnForm) gpuLayers() (string, error) {
	if f.chosenGPU() == nil && len(f.gpus) > 0 {
		return "0", nil
	}
	if f.chosenGPU() == nil && f.known {
		return "", nil
	}
	text := strings.ToLower(strings.TrimSpace(f.layers.Text))
	if text == "" || text == "auto" || text == "all" {
		return text, nil
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 0 || n > maxGPULayers {
		return "", &formError{"GPU layers", "auto, all, 0 to keep the model on the CPU, or a number of layers such as 20"}
	}
	return strconv.Itoa(n), nil
}

// maxGPULayers is more layers than any model has; llama.cpp takes a larger count as all.
const maxGPULayers = 10000

// updateEstimate recomputes the memory line off the UI thread; typing only ever shows
// the answer for the latest text.
func (f *spawnForm) updateEstimate() {
	f.estGen++
	gen := f.estGen
	path, ok := expandPath(f.modelSel.Text, true)
	ctx, ctxErr := optionalInt(f.ctxSize.Text, 0, 1<<20)
	layers, layersErr := f.gpuLayers()
	if !ok || ctxErr != nil || layersErr != nil {
		f.estimate.SetText("")
		f.relayout()
		return
	}
	q := estimateQuery{path: path, ctx: ctx, layers: layers, gpu: f.chosenGPU(), cpu: f.cpu}
	cache := &f.shared.estimates
	f.u.goBackground(func(context.Context) {
		text, fits := q.run(cache)
		f.u.do(func() {
			if gen != f.estGen {
				return
			}
			f.estimate.Importance = widget.MediumImportance
			if !fits {
				f.estimate.Importance = widget.WarningImportance
			}
			f.estimate.SetText(text)
			f.relayout()
		})
	})
}

// estimateQuery is one memory line to compute: the model, the context, the GPU layers
// asked for and the device chosen (nil = CPU only).
type estimateQuery struct {
	path   string
	ctx    int
	layers string
	gpu    *models.Device
	cpu    *models.Device
}

// run answers q as the line under the model, and whether it fits (true when unknown):
//
//	about 1.2 GiB RAM + 3.4 GiB on Vulkan0 (all 33 layers) at 4096 ctx — fits
//	about 4.1 GiB RAM + 1.5 GiB on Vulkan0 at 4096 ctx — does not fit in 2.0 GiB free: 18 of 33 layers
//	about 5.3 GiB RAM on the CPU at 4096 ctx — fits
func (q estimateQuery) run(cache *models.EstimateCache) (string, bool) {
	// The worker runs one sequence unless told otherwise; the dialog does not ask.
	opt := models.EstimateOptions{CtxSize: q.ctx, Parallel: 1}
	n, err := strconv.Atoi(q.layers)
	count := err == nil // else auto: "" (the worker's default) or "auto"; or all
	if q.layers == "all" {
		n, count = -1, true
	}
	auto := q.gpu != nil && !count
	var e models.Estimate
	if auto {
		_, e, err = models.FitLayers(q.path, opt, q.gpu.FreeBytes)
	} else {
		if count {
			opt.GPULayers = n // on unknown devices too: the user may know there is a GPU
		}
		e, err = cache.Estimate(q.path, opt)
	}
	if err != nil {
		return err.Error(), true
	}

	where := "the GPU"
	if q.gpu != nil {
		where = q.gpu.Name
	}
	partial := auto && !e.FullOffload()
	text := "about " + models.FormatBytes(e.RAMBytes) + " RAM" // "≈" is not in the bundled font: it would load a system font
	switch {
	case e.GPULayers == 0:
		text += " on the CPU"
	case partial:
		text += " + " + models.FormatBytes(e.VRAMBytes) + " on " + where
	default:
		text += fmt.Sprintf(" + %s on %s (%s)", models.FormatBytes(e.VRAMBytes), where, layersText(e))
	}
	text += fmt.Sprintf(" at %d ctx", e.CtxSize)

	switch {
	case partial:
		free := models.FormatBytes(q.gpu.FreeBytes) + " free"
		if e.GPULayers == 0 {
			free += " on " + q.gpu.Name
		}
		return fmt.Sprintf("%s — does not fit in %s: %d of %d layers", text, free, e.GPULayers, e.Layers), false
	case q.gpu != nil && e.GPULayers > 0:
		if e.VRAMBytes > models.DeviceBudget(q.gpu.FreeBytes) {
			return text + " — does not fit in " + models.FormatBytes(q.gpu.FreeBytes) + " free", false
		}
		return text + " — fits", true
	case e.GPULayers == 0 && q.cpu != nil && q.cpu.FreeBytes > 0:
		if e.RAMBytes > q.cpu.FreeBytes {
			return text + " — more than the " + models.FormatBytes(q.cpu.FreeBytes) + " of RAM free", false
		}
		return text + " — fits", true
	}
	return text, true
}

// layersText is "all 33 layers" or "18 of 33 layers".
func layersText(e models.Estimate) string {
	if e.FullOffload() {
		return fmt.Sprintf("all %d layers", e.Layers)
	}
	return fmt.Sprintf("%d of %d layers", e.GPULayers, e.Layers)
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
		path := r.URI().Path()
		// A picked file joins the library, so the Models screen and the next spawn
		// offer it without a Browse.
		if err := f.u.addModelFile(path); err != nil {
			f.u.showError(err)
		}
		f.modelSel.SetText(path)
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
		return req, &formError{"Model", "choose a .gguf model file (Browse…), or type or paste its path"}
	}
	// A typed or pasted path: ~, quotes and file:// are what people paste. A file that
	// is not GGUF is left to the spawn, whose error names the fix (the memory line
	// already says so while the dialog is open).
	path, ok := expandPath(req.ModelPath, true)
	if !ok {
		return req, &formError{"Model", "give the model's full path"}
	}
	req.ModelPath = path
	switch st, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		return req, &formError{"Model", "there is no file at " + path + ": give the whole path of a .gguf file (~ is your home folder), or Browse…"}
	case err != nil:
		return req, &formError{"Model", fmt.Sprintf("%s cannot be read: %v", path, errors.Unwrap(err))}
	case st.IsDir():
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
	if req.GPULayers, err = f.gpuLayers(); err != nil {
		return req, err
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
			// The model loaded: it joins the library and the recent models (a typed path
			// too, as a Browsed one does), which the endpoint offers as loadable. One that
			// failed does not: the endpoint would offer a model that cannot load.
			if err := f.u.addModelFile(req.ModelPath); err != nil {
				f.u.core.Logger().Warn("model not added to the library", "path", req.ModelPath, "err", err)
			}
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
