package ui

import (
	"context"
	"fmt"
	"image/color"
	"slices"
	"strconv"
	"strings"
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

// queenCols are the columns of the Queen's worker list, as fitTable shows them (at
// 800 px "Spawned by" steps aside). There is no "last heartbeat": the event stream
// carries state changes, not heartbeats, so a time would either lag (as it did) or need
// a poll of the Queen every second plus a repaint of the window every second. State says
// the same thing without either: online = heartbeats arrive, stale = they stopped for
// longer than the interval, offline = gone. Device and KV cache come from heartbeats
// too: the screen asks the Queen for them while it is shown (queenLoadPeriod).
var queenCols = []tableColumn{
	{title: "Worker", width: 170, grow: true},
	{title: "Address", width: 150, grow: true, keep: 2},
	{title: "Model", width: 130, grow: true},
	{title: "State", width: 72},
	{title: "Device", width: 120, keep: 4},
	{title: "KV cache", width: 104, keep: 3},
	{title: "Spawned by", width: 100, keep: 1},
}

// Columns of the Queen's worker list.
const (
	qcolWorker = iota
	qcolAddress
	qcolModel
	qcolState
	qcolDevice
	qcolKV
	qcolSpawnedBy
)

// queenLoadPeriod is how often the shown Queen screen asks for its workers' load.
const queenLoadPeriod = 2 * time.Second

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
	fit     *fitTable
	workers []wire.Worker
	load    map[string]wire.Worker // the latest heartbeat figures, by worker id
	state   app.QueenState
	quiet   bool // set while the radio is moved by code, not by the user
	content fyne.CanvasObject
	// The lower half: the endpoint's models and the Queen's workers, one at a time (at
	// 800×500 two tables on top of each other showed a row each).
	endpoint   *endpointPart
	parts      *container.AppTabs
	tabModels  *container.TabItem
	tabWorkers *container.TabItem
	// stopLoad ends the load poll; nil while the screen is hidden.
	stopLoad context.CancelFunc
	// ask wakes the load poll at once: the Queen's workers changed, so a model may
	// have loaded or gone.
	ask chan struct{}
}

func newQueenScreen(u *UI) *queenScreen {
	s := &queenScreen{u: u, ask: make(chan struct{}, 1)}
	st := u.core.Settings()

	s.addr = newKeyEntry(func() { s.apply(app.QueenEmbedded) }, nil)
	s.addr.SetText(st.EmbeddedAddr)
	s.embTok = widget.NewPasswordEntry()
	s.embTok.SetPlaceHolder("none")
	s.embTok.SetText(st.EmbeddedToken)
	s.startBt = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), nil)
	s.startBt.Importance = widget.HighImportance
	// Each form is one row (the token beside the address, the buttons at its end): the
	// screen's lower half needs the height at 800×500.
	s.panels = map[app.QueenMode]fyne.CanvasObject{}
	s.panels[app.QueenEmbedded] = container.NewBorder(nil, nil, boldLabel("Address"),
		container.NewHBox(boldLabel("Token"), fixedWidth(190, s.embTok), s.startBt), s.addr)

	s.url = newKeyEntry(func() { s.apply(app.QueenRemote) }, nil)
	s.url.SetPlaceHolder("http://queen.local:7833")
	s.url.SetText(st.RemoteURL)
	s.remTok = widget.NewPasswordEntry()
	s.remTok.SetPlaceHolder("none")
	s.remTok.SetText(st.RemoteToken)
	test := widget.NewButtonWithIcon("Test connection", theme.SearchIcon(), s.testRemote)
	connect := widget.NewButtonWithIcon("Connect", theme.LoginIcon(), func() { s.apply(app.QueenRemote) })
	connect.Importance = widget.HighImportance
	s.panels[app.QueenRemote] = container.NewBorder(nil, nil, boldLabel("URL"),
		container.NewHBox(boldLabel("Token"), fixedWidth(150, s.remTok), test, connect), s.url)
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
		func() (int, int) { return len(s.workers), len(s.fit.shown) },
		func() fyne.CanvasObject { return newTipLabel(u.tips, "") },
		func(id widget.TableCellID, o fyne.CanvasObject) {
			col := s.fit.col(id.Col)
			if id.Row >= len(s.workers) || col < 0 {
				return
			}
			text, imp, tip := queenWorkerCell(s.withLoad(s.workers[id.Row]), col)
			l := o.(*tipLabel)
			l.tip = tip
			if l.Text != text || l.Importance != imp {
				l.Importance = imp
				l.SetText(text)
			}
		},
	)
	s.fit = newFitTable(s.list, queenCols)
	s.list.ShowHeaderRow = true
	s.list.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	s.list.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if c := s.fit.col(id.Col); c >= 0 {
			o.(*widget.Label).SetText(queenCols[c].title)
		}
	}

	panel := container.NewStack(s.panels[app.QueenOff], s.panels[app.QueenEmbedded], s.panels[app.QueenRemote])
	head := container.NewVBox(
		boldLabel("Where local workers register"),
		s.mode, panel,
		container.NewBorder(nil, nil, container.NewCenter(dotBox), nil, s.status),
		s.busy,
	)
	s.endpoint = newEndpointPart(u)
	s.endpoint.changed = s.retitle
	s.tabModels = container.NewTabItem("Models", s.endpoint.content)
	s.tabWorkers = container.NewTabItem("Workers (all machines)", s.fit.holder)
	s.parts = container.NewAppTabs(s.tabModels, s.tabWorkers)
	s.content = container.NewBorder(container.NewPadded(head), nil, nil, nil, s.parts)

	// The radio starts on the saved mode, which is the core's: setState moves it only
	// when the core's mode changes from this one.
	s.state.Mode = st.QueenMode
	s.selectMode(st.QueenMode)
	return s
}

// retitle counts the models and workers in the lower half's tabs.
func (s *queenScreen) retitle() {
	models, workers := "Models", "Workers (all machines)"
	if s.endpoint.base != "" {
		models = fmt.Sprintf("Models (%d)", len(s.endpoint.models))
	}
	if s.state.URL != "" {
		workers = fmt.Sprintf("Workers, all machines (%d)", len(s.workers))
	}
	if s.tabModels.Text != models || s.tabWorkers.Text != workers {
		s.tabModels.Text, s.tabWorkers.Text = models, workers
		s.parts.Refresh()
	}
}

func boldLabel(text string) *widget.Label {
	return widget.NewLabelWithStyle(text, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

// fixedWidth gives o width w and its own height.
func fixedWidth(w float32, o fyne.CanvasObject) *fyne.Container {
	return container.NewGridWrap(fyne.NewSize(w, o.MinSize().Height), o)
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
		s.askNow()
	}
	settings := s.u.core.Settings()
	hasToken := st.Mode == app.QueenEmbedded || (st.Mode == app.QueenRemote && settings.RemoteToken != "")
	s.endpoint.setQueen(st, hasToken)
	if st.URL != prev.URL {
		s.askNow()
	}
	s.retitle()
	if s.u.tray != nil {
		s.u.tray.update()
	}
}

func sameQueenWorker(a, b wire.Worker) bool {
	return a.WorkerID == b.WorkerID && a.State == b.State && a.URL == b.URL && a.Model == b.Model &&
		a.Status == b.Status && a.SpawnedBy == b.SpawnedBy && a.Device == b.Device && a.Runtime == b.Runtime
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

// queenWorkerCell is a cell of the Queen's worker list: its text, colour and tooltip.
func queenWorkerCell(w wire.Worker, col int) (string, widget.Importance, string) {
	plain := widget.MediumImportance
	switch col {
	case qcolWorker:
		return w.WorkerID, plain, ""
	case qcolAddress:
		return fmt.Sprintf("%s:%d", w.Hostname, w.Port), plain, ""
	case qcolModel:
		return w.Model, plain, ""
	case qcolState:
		switch w.State {
		case wire.StateOnline:
			return string(w.State), widget.SuccessImportance, "heartbeats arrive"
		case wire.StateStale:
			return string(w.State), widget.WarningImportance, "heartbeats stopped for longer than the interval"
		case wire.StateOffline:
			return string(w.State), widget.DangerImportance, ""
		}
		return string(w.State), plain, ""
	case qcolDevice:
		return deviceCell(w)
	case qcolKV:
		return kvCell(w)
	case qcolSpawnedBy:
		return w.SpawnedBy, plain, ""
	}
	return "", plain, ""
}

// deviceCell is what the worker's model runs on ("cpu", "Vulkan0 (llvmpipe)"); the
// tooltip names the llama.cpp build and the device's free memory.
func deviceCell(w wire.Worker) (string, widget.Importance, string) {
	if w.Device == "" {
		return "—", widget.LowImportance, "not reported yet (it comes with the worker's heartbeats)"
	}
	var tip []string
	if w.Runtime != "" {
		tip = append(tip, "llama.cpp build "+w.Runtime)
	}
	if w.DeviceFreeBytes > 0 {
		tip = append(tip, formatBytes(w.DeviceFreeBytes)+" free on the device")
	}
	return w.Device, widget.MediumImportance, strings.Join(tip, " · ")
}

// kvCell is the KV cache in use of its capacity, in thousands of tokens ("3.1k / 32.8k").
func kvCell(w wire.Worker) (string, widget.Importance, string) {
	if w.KVCacheCapacity <= 0 {
		return "—", widget.LowImportance, "not reported yet (it comes with the worker's heartbeats)"
	}
	tip := fmt.Sprintf("%d of %d tokens of KV cache in use", w.KVCacheTokens, w.KVCacheCapacity)
	if w.Slots > 0 {
		tip += fmt.Sprintf(", %s", plural(w.Slots, "slot"))
	}
	imp := widget.MediumImportance
	if w.KVCacheTokens*10 >= w.KVCacheCapacity*9 {
		imp = widget.WarningImportance // nearly full: the next long prompt may not fit
	}
	return kilo(w.KVCacheTokens) + " / " + kilo(w.KVCacheCapacity), imp, tip
}

// kilo writes a token count compactly: 950, 3.1k, 33k.
func kilo(n int) string {
	switch {
	case n < 1000:
		return strconv.Itoa(n)
	case n < 10000:
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	}
	return strconv.Itoa((n+500)/1000) + "k"
}

// withLoad is w with the latest heartbeat figures the screen asked the Queen for.
func (s *queenScreen) withLoad(w wire.Worker) wire.Worker {
	if l, ok := s.load[w.WorkerID]; ok {
		w.Slots, w.KVCacheTokens, w.KVCacheCapacity = l.Slots, l.KVCacheTokens, l.KVCacheCapacity
		w.Device, w.Runtime, w.DeviceFreeBytes = l.Device, l.Runtime, l.DeviceFreeBytes
	}
	return w
}

// shown starts asking the Queen for its workers' load while the screen is in view.
func (s *queenScreen) shown() {
	if s.stopLoad != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.u.ctx)
	s.stopLoad = cancel
	s.u.goBackground(func(context.Context) {
		tick := time.NewTicker(queenLoadPeriod)
		defer tick.Stop()
		for {
			if st := s.u.core.QueenState(); st.URL != "" {
				ask, done := context.WithTimeout(ctx, queenLoadPeriod)
				ws, err := s.u.core.QueenWorkers(ask)
				es, esErr := s.u.core.EndpointStatus(ask)
				done()
				s.u.do(func() {
					if ctx.Err() != nil {
						return
					}
					if err == nil {
						s.setLoad(ws)
					}
					s.endpoint.setStatus(st.URL, es.Models, esErr)
				})
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-s.ask:
			}
		}
	})
}

// askNow wakes the load poll (when the screen is shown) to ask the Queen at once.
func (s *queenScreen) askNow() {
	select {
	case s.ask <- struct{}{}:
	default: // one is pending already
	}
}

// hidden stops the load poll.
func (s *queenScreen) hidden() {
	if s.stopLoad != nil {
		s.stopLoad()
		s.stopLoad = nil
	}
}

// setLoad keeps ws's heartbeat figures and repaints only when a shown cell changes.
func (s *queenScreen) setLoad(ws []wire.Worker) {
	cells := func() string {
		var b strings.Builder
		for _, w := range s.workers {
			w = s.withLoad(w)
			for _, col := range []int{qcolDevice, qcolKV} {
				text, _, tip := queenWorkerCell(w, col)
				b.WriteString(text + "|" + tip + "|")
			}
		}
		return b.String()
	}
	before := cells()
	s.load = make(map[string]wire.Worker, len(ws))
	for _, w := range ws {
		s.load[w.WorkerID] = w
	}
	if cells() != before {
		s.list.Refresh()
	}
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
			// Without a token the list answered openly: there was no token to accept.
			done := "and accepts the token"
			if token == "" {
				done = "and needs no token"
			}
			s.status.SetText(fmt.Sprintf("Test passed: Queen %s answers at %s %s.", version, url, done))
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
