package ui

import (
	"context"
	"fmt"
	"image/color"
	"slices"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// queenColTitles are the columns of the Queen's worker list. There is no "last
// heartbeat": the event stream carries state changes, not heartbeats, so a time would
// either lag (as it did) or need a poll of the Queen every second plus a repaint of the
// window every second. State says the same thing without either: online = heartbeats
// arrive, stale = they stopped for longer than the interval, offline = gone.
var queenColTitles = []string{"Worker", "Address", "Model", "State", "Spawned by"}

var modeLabels = []string{"Off (Queenless)", "Embedded dev Queen", "Remote Queen"}
var modeOf = map[string]app.QueenMode{
	modeLabels[0]: app.QueenOff, modeLabels[1]: app.QueenEmbedded, modeLabels[2]: app.QueenRemote,
}

// queenScreen is the Queen tab (UI thread only).
type queenScreen struct {
	u       *UI
	mode    *widget.RadioGroup
	panels  map[app.QueenMode]fyne.CanvasObject
	addr    *keyEntry
	embTok  *widget.Entry
	startBt *widget.Button
	url     *keyEntry
	remTok  *widget.Entry
	dot     *canvas.Circle
	status  *widget.Label
	busy    *widget.ProgressBarInfinite
	list    *widget.Table
	workers []wire.Worker
	state   app.QueenState
	quiet   bool // set while the radio is moved by code, not by the user
	content fyne.CanvasObject
}

func newQueenScreen(u *UI) *queenScreen {
	s := &queenScreen{u: u}
	st := u.core.Settings()

	s.addr = newKeyEntry(func() { s.apply(app.QueenEmbedded) }, nil)
	s.addr.SetText(st.EmbeddedAddr)
	s.embTok = widget.NewPasswordEntry()
	s.embTok.SetPlaceHolder("none")
	s.embTok.SetText(st.EmbeddedToken)
	s.startBt = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), nil)
	s.startBt.Importance = widget.HighImportance
	embedded := widget.NewForm(
		widget.NewFormItem("Address", s.addr),
		widget.NewFormItem("Token", s.embTok),
	)
	s.panels = map[app.QueenMode]fyne.CanvasObject{}
	s.panels[app.QueenEmbedded] = container.NewVBox(embedded, container.NewHBox(s.startBt))

	s.url = newKeyEntry(func() { s.apply(app.QueenRemote) }, nil)
	s.url.SetPlaceHolder("http://queen.local:7833")
	s.url.SetText(st.RemoteURL)
	s.remTok = widget.NewPasswordEntry()
	s.remTok.SetPlaceHolder("none")
	s.remTok.SetText(st.RemoteToken)
	test := widget.NewButtonWithIcon("Test connection", theme.SearchIcon(), s.testRemote)
	connect := widget.NewButtonWithIcon("Connect", theme.LoginIcon(), func() { s.apply(app.QueenRemote) })
	connect.Importance = widget.HighImportance
	remote := widget.NewForm(widget.NewFormItem("URL", s.url), widget.NewFormItem("Token", s.remTok))
	s.panels[app.QueenRemote] = container.NewVBox(remote, container.NewHBox(test, connect))
	off := widget.NewLabel("Workers run on their own; nothing registers them or routes to them. " +
		"Chat talks to each worker directly.")
	off.Wrapping = fyne.TextWrapWord
	s.panels[app.QueenOff] = off

	s.mode = widget.NewRadioGroup(modeLabels, func(label string) {
		if s.quiet {
			return
		}
		mode := modeOf[label]
		s.showPanel(mode)
		if mode != app.QueenRemote || s.url.Text != "" {
			s.apply(mode)
		}
	})
	s.mode.Horizontal = true
	s.mode.Required = true

	s.dot = canvas.NewCircle(theme.Color(theme.ColorNameDisabled))
	dotBox := container.NewGridWrap(fyne.NewSize(14, 14), s.dot)
	s.status = widget.NewLabel("")
	s.status.Wrapping = fyne.TextWrapWord
	s.busy = widget.NewProgressBarInfinite()
	s.busy.Stop()
	s.busy.Hide()

	s.list = widget.NewTable(
		func() (int, int) { return len(s.workers), len(queenColTitles) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row >= len(s.workers) {
				return
			}
			text, imp := queenWorkerCell(s.workers[id.Row], id.Col)
			l := o.(*widget.Label)
			l.Importance = imp
			l.SetText(text)
		},
	)
	s.list.ShowHeaderRow = true
	s.list.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	s.list.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if id.Col >= 0 {
			o.(*widget.Label).SetText(queenColTitles[id.Col])
		}
	}
	for c, w := range []float32{220, 170, 140, 90, 100} {
		s.list.SetColumnWidth(c, w)
	}

	panel := container.NewStack(s.panels[app.QueenOff], s.panels[app.QueenEmbedded], s.panels[app.QueenRemote])
	head := container.NewVBox(
		widget.NewLabelWithStyle("Where local workers register", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		s.mode, panel,
		container.NewBorder(nil, nil, container.NewCenter(dotBox), nil, s.status),
		s.busy,
		widget.NewSeparator(),
		widget.NewLabelWithStyle("The Queen's workers (all machines)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
	)
	s.content = container.NewBorder(container.NewPadded(head), nil, nil, nil, s.list)

	// The radio starts on the saved mode, which is the core's: setState moves it only
	// when the core's mode changes from this one.
	s.state.Mode = st.QueenMode
	s.selectMode(st.QueenMode)
	return s
}

// selectMode moves the radio and the form to mode without applying it.
func (s *queenScreen) selectMode(mode app.QueenMode) {
	s.quiet = true
	s.mode.SetSelected(labelOf(mode))
	s.quiet = false
	s.showPanel(mode)
}

func labelOf(m app.QueenMode) string {
	for l, mode := range modeOf {
		if mode == m {
			return l
		}
	}
	return modeLabels[0]
}

func (s *queenScreen) showPanel(mode app.QueenMode) {
	for m, p := range s.panels {
		if m == mode {
			p.Show()
		} else {
			p.Hide()
		}
	}
}

// start follows the core's Queen picture (mode, embedded Queen, event stream) and the
// hive's Queen status.
func (s *queenScreen) start() {
	changes, unsub := s.u.core.Subscribe()
	events, unsubEvents := s.u.hive.Subscribe()
	s.u.goBackground(func(ctx context.Context) {
		defer unsub()
		defer unsubEvents()
		publish := func() {
			st := s.u.core.QueenState()
			s.u.do(func() { s.setState(st) })
		}
		publish()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
				publish()
			case ev, ok := <-events:
				if !ok {
					return
				}
				if ev.Kind == hive.EventQueen {
					publish()
				}
			}
		}
	})
}

// setState shows st; the list repaints only when the Queen's workers changed.
func (s *queenScreen) setState(st app.QueenState) {
	prev := s.state
	s.state = st
	// The radio and the entries are the user's until applied: a status refresh (one
	// comes every few seconds while a Queen runs) must not move them, or a choice not
	// yet applied (Remote before its URL is typed) flips back under the cursor. The radio
	// follows the core only when the core's mode changes: after an apply, or Stop. That
	// may arrive while the radio is disabled for the apply, so it is not skipped then.
	if st.Mode != prev.Mode {
		s.selectMode(st.Mode)
	}
	if st.Embedded {
		s.startBt.SetText("Stop")
		s.startBt.SetIcon(theme.MediaStopIcon())
		s.startBt.Importance = widget.MediumImportance
		s.startBt.OnTapped = func() { s.apply(app.QueenOff) }
	} else {
		s.startBt.SetText("Start")
		s.startBt.SetIcon(theme.MediaPlayIcon())
		s.startBt.Importance = widget.HighImportance
		s.startBt.OnTapped = func() { s.apply(app.QueenEmbedded) }
	}
	s.startBt.Refresh()

	text, col := queenIndicator(st)
	s.status.SetText(text)
	s.dot.FillColor = col
	s.dot.Refresh()
	if !slices.EqualFunc(prev.Workers, st.Workers, sameQueenWorker) {
		s.workers = st.Workers
		s.list.Refresh()
	}
	if s.u.tray != nil {
		s.u.tray.update()
	}
}

func sameQueenWorker(a, b wire.Worker) bool {
	return a.WorkerID == b.WorkerID && a.State == b.State && a.URL == b.URL && a.Model == b.Model &&
		a.Status == b.Status && a.SpawnedBy == b.SpawnedBy
}

// queenIndicator is the connection line and its colour.
func queenIndicator(st app.QueenState) (string, color.Color) {
	green := theme.Color(theme.ColorNameSuccess)
	amber := theme.Color(theme.ColorNameWarning)
	red := theme.Color(theme.ColorNameError)
	grey := theme.Color(theme.ColorNameDisabled)
	switch {
	case st.Mode == app.QueenOff:
		return "Queenless: workers are not registered anywhere.", grey
	case st.URL == "":
		return "Not connected: " + st.Error, red
	case st.Connected:
		who := "Remote Queen"
		if st.Mode == app.QueenEmbedded {
			who = "Embedded Queen"
		}
		text := fmt.Sprintf("%s at %s · %s known · %d local registered, %d pending",
			who, st.URL, plural(len(st.Workers), "worker"), st.Hive.Registered, st.Hive.Pending)
		if st.Hive.OrdersAs != "" {
			text += " · takes spawn orders here as " + st.Hive.OrdersAs
		}
		return text, green
	case st.Error != "":
		return fmt.Sprintf("Connecting to %s… (%s)", st.URL, st.Error), amber
	}
	return "Connecting to " + st.URL + "…", amber
}

func queenWorkerCell(w wire.Worker, col int) (string, widget.Importance) {
	switch col {
	case 0:
		return w.WorkerID, widget.MediumImportance
	case 1:
		return fmt.Sprintf("%s:%d", w.Hostname, w.Port), widget.MediumImportance
	case 2:
		return w.Model, widget.MediumImportance
	case 3:
		switch w.State {
		case wire.StateOnline:
			return string(w.State), widget.SuccessImportance
		case wire.StateStale:
			return string(w.State), widget.WarningImportance
		case wire.StateOffline:
			return string(w.State), widget.DangerImportance
		}
		return string(w.State), widget.MediumImportance
	case 4:
		return w.SpawnedBy, widget.MediumImportance
	}
	return "", widget.MediumImportance
}

// apply switches the Queen mode in the background; the screen follows the core.
func (s *queenScreen) apply(mode app.QueenMode) {
	target, token := "", ""
	switch mode {
	case app.QueenEmbedded:
		target, token = s.addr.Text, s.embTok.Text
	case app.QueenRemote:
		target, token = s.url.Text, s.remTok.Text
	}
	s.setBusy(true)
	s.u.goBackground(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err := s.u.core.SetQueen(ctx, mode, target, token)
		s.u.do(func() {
			s.setBusy(false)
			if err != nil {
				s.u.showError(err)
			}
		})
	})
}

func (s *queenScreen) testRemote() {
	url, token := s.url.Text, s.remTok.Text
	s.setBusy(true)
	s.u.goBackground(func(ctx context.Context) {
		version, err := app.TestQueen(ctx, url, token)
		s.u.do(func() {
			s.setBusy(false)
			if err != nil {
				s.u.showError(err)
				return
			}
			s.status.SetText(fmt.Sprintf("Test passed: Queen %s answers at %s and accepts the token.", version, url))
		})
	})
}

func (s *queenScreen) setBusy(busy bool) {
	if busy {
		s.mode.Disable()
		s.busy.Show()
		s.busy.Start()
		return
	}
	s.mode.Enable()
	s.busy.Stop()
	s.busy.Hide()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
