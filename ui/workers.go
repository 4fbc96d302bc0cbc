package ui

import (
	"context"
	"fmt"
	"slices"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/assets"
	"github.com/beekeeper-hive/beekeeper/hive"
)

// workerRow is one line of the Workers table, as text: comparing two rows tells whether
// anything on screen would change, so an idle table is never repainted.
type workerRow struct {
	id       string
	state    hive.State
	progress float64 // load progress while starting
	live     bool
	cells    [colActions]string
	stateImp widget.Importance
	stateTip string // why it stopped, for a worker that did
	syncImp  widget.Importance
}

// Columns of the Workers table.
const (
	colID = iota
	colModel
	colType
	colPort
	colPID
	colState
	colQueen
	colCPU
	colMem
	colUptime
	colActions
	numCols
)

var colTitles = [numCols]string{"Worker", "Model", "Type", "Port", "PID", "State", "Queen", "CPU", "Memory", "Uptime", ""}

// workerCols are the table's columns as fitTable shows them: at 800 px type, PID, port
// and uptime step aside (the worker id names its type and port) so the state, the
// Queen's view, CPU, memory and the row's actions stay in sight.
var workerCols = func() []tableColumn {
	spec := [numCols]tableColumn{
		colID: {width: 150, grow: true}, colModel: {width: 130, grow: true},
		colType: {width: 56, keep: 1}, colPort: {width: 64, keep: 3}, colPID: {width: 80, keep: 2},
		colState: {width: 128}, colQueen: {width: 96, keep: 6}, colCPU: {width: 60, keep: 5},
		colMem: {width: 80, keep: 7}, colUptime: {width: 70, keep: 4}, colActions: {width: 124},
	}
	for i := range spec {
		spec[i].title = colTitles[i]
	}
	return spec[:]
}()

type workersScreen struct {
	u       *UI
	rows    []workerRow // UI thread only
	shown   bool        // rows have been put on screen once
	table   *widget.Table
	fit     *fitTable
	summary *widget.Label
	body    *fyne.Container // table or empty state
	empty   fyne.CanvasObject
	tableUI fyne.CanvasObject
	content fyne.CanvasObject
}

func newWorkersScreen(u *UI) *workersScreen {
	s := &workersScreen{u: u}
	s.table = widget.NewTable(
		func() (int, int) { return len(s.rows), len(s.fit.shown) },
		s.createCell,
		func(id widget.TableCellID, o fyne.CanvasObject) {
			id.Col = s.fit.col(id.Col)
			s.updateCell(id, o)
		},
	)
	s.fit = newFitTable(s.table, workerCols)
	s.table.ShowHeaderRow = true
	s.table.CreateHeader = func() fyne.CanvasObject {
		l := widget.NewLabel("")
		l.TextStyle = fyne.TextStyle{Bold: true}
		return l
	}
	s.table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if c := s.fit.col(id.Col); c >= 0 {
			o.(*widget.Label).SetText(colTitles[c])
		}
	}
	s.table.OnSelected = func(widget.TableCellID) { s.table.UnselectAll() }

	spawn := widget.NewButtonWithIcon("Spawn worker", theme.ContentAddIcon(), func() { u.openSpawnDialog("") })
	spawn.Importance = widget.HighImportance
	s.summary = widget.NewLabel("")
	s.summary.Importance = widget.LowImportance
	top := container.NewHBox(spawn, s.summary)
	s.tableUI = container.NewBorder(container.NewPadded(top), nil, nil, nil, s.fit.holder)

	icon := canvas.NewImageFromResource(assets.Icon)
	icon.FillMode = canvas.ImageFillContain
	icon.SetMinSize(fyne.NewSize(112, 112))
	title := widget.NewLabelWithStyle("No workers yet", fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	hint := widget.NewLabelWithStyle("A worker serves one GGUF model over an OpenAI-compatible API.",
		fyne.TextAlignCenter, fyne.TextStyle{})
	hint.Importance = widget.LowImportance
	big := widget.NewButtonWithIcon("Spawn worker", theme.ContentAddIcon(), func() { u.openSpawnDialog("") })
	big.Importance = widget.HighImportance
	keys := widget.NewLabelWithStyle("Ctrl+N", fyne.TextAlignCenter, fyne.TextStyle{})
	keys.Importance = widget.LowImportance
	s.empty = container.NewCenter(container.NewVBox(icon, title, hint,
		container.NewCenter(container.New(layout.NewGridWrapLayout(fyne.NewSize(240, 48)), big)), keys))

	s.body = container.NewStack(s.empty)
	s.content = s.body
	// The first frame already shows the workers the hive re-adopted: no flash of the
	// empty state before the watcher's first hop.
	s.setRows(buildRows(u.hive.List(), nil, time.Now()))
	return s
}

// start follows the hive: registry events and stats ticks become one fresh set of rows,
// built off the UI thread and handed over only when something on screen changed.
func (s *workersScreen) start() {
	events, unsubEvents := s.u.hive.Subscribe()
	stats, unsubStats := s.u.hive.SubscribeStats()
	s.u.goBackground(func(ctx context.Context) {
		defer unsubEvents()
		defer unsubStats()
		prev := map[string]hive.State{}
		var sample map[string]hive.Stats
		publish := func() {
			entries := s.u.hive.List()
			s.notifyCrashes(prev, entries)
			rows := buildRows(entries, sample, time.Now())
			s.u.do(func() { s.setRows(rows) })
		}
		publish()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					return
				}
				publish()
			case m, ok := <-stats:
				if !ok {
					stats = nil // the hive stopped sampling; keep following events
					continue
				}
				sample = m
				publish()
			}
		}
	})
}

// notifyCrashes sends a desktop notification for each worker that went from live to
// crashed since the last call, and remembers the states.
func (s *workersScreen) notifyCrashes(prev map[string]hive.State, entries []hive.Entry) {
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.ID] = true
		if old, ok := prev[e.ID]; ok && old.Live() && e.State == hive.StateCrashed {
			s.u.app.SendNotification(fyne.NewNotification("Worker crashed",
				fmt.Sprintf("%s (%s) stopped unexpectedly: %s", e.ID, e.Model, e.ExitReason)))
			s.u.core.Logger().Warn("worker crashed", "id", e.ID, "reason", e.ExitReason)
		}
		prev[e.ID] = e.State
	}
	for id := range prev {
		if !seen[id] {
			delete(prev, id)
		}
	}
}

// setRows swaps in rows and repaints only when they differ from what is shown.
func (s *workersScreen) setRows(rows []workerRow) {
	if s.shown && slices.Equal(rows, s.rows) {
		return
	}
	wasEmpty := !s.shown || len(s.rows) == 0
	s.shown = true
	s.rows = rows
	live := 0
	for _, r := range rows {
		if r.live {
			live++
		}
	}
	if summary := fmt.Sprintf("%d running · %d listed", live, len(rows)); s.summary.Text != summary {
		s.summary.SetText(summary)
	}
	switch {
	case len(rows) == 0:
		s.body.Objects = []fyne.CanvasObject{s.empty}
		s.body.Refresh()
	case wasEmpty:
		s.body.Objects = []fyne.CanvasObject{s.tableUI}
		s.body.Refresh()
		s.table.Refresh()
	default:
		s.table.Refresh()
	}
	if s.u.tray != nil {
		s.u.tray.update()
	}
}

func buildRows(entries []hive.Entry, stats map[string]hive.Stats, now time.Time) []workerRow {
	rows := make([]workerRow, 0, len(entries))
	for _, e := range entries {
		r := workerRow{id: e.ID, state: e.State, live: e.State.Live()}
		r.cells[colID] = e.ID
		r.cells[colModel] = e.Model
		r.cells[colType] = e.WorkerType
		r.cells[colPort] = fmt.Sprint(e.Port)
		r.cells[colPID] = "—"
		r.cells[colCPU], r.cells[colMem], r.cells[colUptime] = "—", "—", "—"
		if r.live {
			r.cells[colPID] = fmt.Sprint(e.PID)
			r.cells[colUptime] = formatUptime(now.Sub(e.StartedAt))
			if st, ok := stats[e.ID]; ok {
				r.cells[colCPU] = formatCPU(st.CPUPercent)
				r.cells[colMem] = formatBytes(st.RSSBytes)
			}
		}
		r.cells[colState], r.stateImp = stateText(e)
		if !r.live {
			r.stateTip = e.ExitReason
		}
		if e.State == hive.StateStarting {
			r.progress = e.LoadProgress
		}
		r.cells[colQueen], r.syncImp = syncText(e)
		rows = append(rows, r)
	}
	return rows
}

func stateText(e hive.Entry) (string, widget.Importance) {
	switch e.State {
	case hive.StateStarting:
		return fmt.Sprintf("loading %d%%", int(e.LoadProgress*100)), widget.WarningImportance
	case hive.StateReady:
		return "ready", widget.SuccessImportance // no "●": not in the bundled font, a system one (7 MB parsed) would load for it
	case hive.StateStopping:
		return "stopping…", widget.WarningImportance
	case hive.StateCrashed:
		// A worker killed by a signal has no exit code (the hive records -1); one adopted
		// from an earlier run of the app died where nobody could read how.
		switch {
		case e.ExitCode == nil:
			return "crashed (code unknown)", widget.DangerImportance
		case *e.ExitCode < 0:
			return "crashed (signal)", widget.DangerImportance
		}
		return fmt.Sprintf("crashed (exit %d)", *e.ExitCode), widget.DangerImportance
	case hive.StateExited:
		if e.ExitCode != nil {
			return fmt.Sprintf("exited (%d)", *e.ExitCode), widget.LowImportance
		}
		return "exited", widget.LowImportance
	}
	return string(e.State), widget.MediumImportance
}

func syncText(e hive.Entry) (string, widget.Importance) {
	if !e.State.Live() {
		return "—", widget.LowImportance
	}
	switch e.Sync {
	case hive.SyncOnline:
		return "online", widget.SuccessImportance
	case hive.SyncRegistered:
		return "registered", widget.MediumImportance
	case hive.SyncPending:
		return "pending", widget.WarningImportance
	case hive.SyncStale:
		return "stale", widget.DangerImportance
	case hive.SyncOff, "":
		return "off", widget.LowImportance
	}
	return string(e.Sync), widget.MediumImportance
}

// formatUptime is coarse on purpose: the cell changes at most once a minute, so an idle
// table is not repainted every second (every repaint redraws the whole window).
func formatUptime(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "<1m"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// formatCPU shows whole percents, and anything under one as "<1%": an idle worker
// measures 0 in one sample and 0.5 in the next (one 10 ms clock tick), and a cell that
// flips between them repaints the window every few seconds.
func formatCPU(pct float64) string {
	if pct < 1 {
		return "<1%"
	}
	return fmt.Sprintf("%.0f%%", pct)
}

// formatBytes shows whole megabytes, for the same reason as formatCPU.
func formatBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// cell is the one template of every table cell: a label, a progress bar (state while
// loading) or the row's action buttons, shown by column.
type cell struct {
	label    *tipLabel
	progress *widget.ProgressBar
	actions  *fyne.Container
	stop     *tipButton
	chat     *tipButton
	more     *tipButton // restart, logs, remove
	box      *fyne.Container
}

func (s *workersScreen) createCell() fyne.CanvasObject {
	tips := s.u.tips
	c := &cell{label: newTipLabel(tips, ""), progress: widget.NewProgressBar()}
	c.stop = newTipButton(tips, "", theme.MediaStopIcon(), "Stop this worker", nil)
	c.chat = newTipButton(tips, "", theme.MailComposeIcon(), "Chat with this worker", nil)
	c.more = newTipButton(tips, "", theme.MoreVerticalIcon(), "Restart, logs, remove", nil)
	for _, b := range []*tipButton{c.stop, c.chat, c.more} {
		b.Importance = widget.LowImportance
	}
	c.actions = container.NewHBox(c.stop, c.chat, c.more)
	c.box = container.NewStack(c.label, container.NewPadded(c.progress), c.actions)
	w := &cellWidget{c: c}
	w.ExtendBaseWidget(w)
	return w
}

func (s *workersScreen) updateCell(id widget.TableCellID, o fyne.CanvasObject) {
	c := o.(*cellWidget).c
	if id.Row < 0 || id.Row >= len(s.rows) || id.Col < 0 {
		return
	}
	r := s.rows[id.Row]
	// Touch only what changed: a table refresh runs this for every cell, and a label
	// refreshed with the same text is shaped and drawn again all the same.
	var shown fyne.CanvasObject = c.label
	switch {
	case id.Col == colActions:
		s.bindActions(c, r)
		shown = c.actions
	case id.Col == colState && r.state == hive.StateStarting:
		if c.progress.Value != r.progress {
			c.progress.SetValue(r.progress)
		}
		shown = c.progress
	default:
		imp, tip := widget.MediumImportance, ""
		switch id.Col {
		case colState:
			imp, tip = r.stateImp, r.stateTip
		case colQueen:
			imp = r.syncImp
		}
		c.label.tip = tip
		if c.label.Text != r.cells[id.Col] || c.label.Importance != imp {
			c.label.Importance = imp
			c.label.SetText(r.cells[id.Col])
		}
	}
	for _, o := range []fyne.CanvasObject{c.label, c.progress, c.actions} {
		if o == shown && !o.Visible() {
			o.Show()
		} else if o != shown && o.Visible() {
			o.Hide()
		}
	}
}

// bindActions points the row's buttons at worker r.id. Stop stays Stop, disabled once
// the worker is gone: it used to turn into Remove in the same place, so a double click
// on Stop removed the row. Remove is in the row's menu and asks first.
func (s *workersScreen) bindActions(c *cell, r workerRow) {
	id := r.id
	c.stop.OnTapped = func() { s.stopWorker(id) }
	setEnabled(c.stop, r.live && r.state != hive.StateStopping)
	c.chat.OnTapped = func() { s.u.openChat(id) }
	setEnabled(c.chat, r.state == hive.StateReady)
	more := c.more
	c.more.OnTapped = func() {
		pos := fyne.CurrentApp().Driver().AbsolutePositionForObject(more).Add(fyne.NewPos(0, more.Size().Height))
		widget.ShowPopUpMenuAtPosition(s.rowMenu(r), s.u.win.Canvas(), pos)
	}
}

// rowMenu is a row's less frequent actions: restart, logs, remove.
func (s *workersScreen) rowMenu(r workerRow) *fyne.Menu {
	id := r.id
	restart := fyne.NewMenuItem("Restart", func() { s.restartWorker(id) })
	restart.Icon = theme.MediaReplayIcon()
	// A second restart while one is under way would race it for the same id and port.
	restart.Disabled = r.state == hive.StateStarting || r.state == hive.StateStopping
	logs := fyne.NewMenuItem("Logs", func() { s.u.showWorkerLog(id) })
	logs.Icon = theme.ListIcon()
	remove := fyne.NewMenuItem("Remove from the list…", func() { s.confirmRemove(id) })
	remove.Icon = theme.DeleteIcon()
	remove.Disabled = r.live // stop it first
	return fyne.NewMenu("", restart, logs, fyne.NewMenuItemSeparator(), remove)
}

// confirmRemove asks before forgetting a worker that is gone, and its log.
func (s *workersScreen) confirmRemove(id string) {
	d := dialog.NewConfirm("Remove worker", fmt.Sprintf("Remove %s from the list and delete its log? The model file stays.", id),
		func(ok bool) {
			if ok {
				s.removeWorker(id)
			}
		}, s.u.win)
	d.SetConfirmText("Remove")
	s.u.showDialog(d)
}

func setEnabled(b fyne.Disableable, on bool) {
	if on && b.Disabled() {
		b.Enable()
	} else if !on && !b.Disabled() {
		b.Disable()
	}
}

// stopWorker stops id in the background; the row follows the hive's events.
func (s *workersScreen) stopWorker(id string) {
	s.u.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.u.hive.Stop(ctx, id); err != nil {
			s.u.do(func() { s.u.showError(fmt.Errorf("stop %s: %w", id, err)) })
		}
	})
}

func (s *workersScreen) restartWorker(id string) {
	s.u.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		if _, err := s.u.hive.Restart(ctx, id); err != nil {
			s.u.do(func() { s.u.showError(fmt.Errorf("restart %s: %w", id, err)) })
		}
	})
}

// removeWorker forgets an exited worker in the background: the registry's file lock may
// be held by another instance (the CLI) for a moment, and the UI thread must not wait.
func (s *workersScreen) removeWorker(id string) {
	s.u.goBackground(func(context.Context) {
		if err := s.u.hive.Remove(id); err != nil {
			s.u.do(func() { s.u.showError(fmt.Errorf("remove %s: %w", id, err)) })
		}
	})
}

// cellWidget wraps the cell's objects so the table can hand the template back.
type cellWidget struct {
	widget.BaseWidget
	c *cell
}

func (w *cellWidget) CreateRenderer() fyne.WidgetRenderer {
	return widget.NewSimpleRenderer(w.c.box)
}
