package ui

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

const (
	appLogSource  = "Beekeeper (this app)"
	logTailLines  = 1000
	logPollPeriod = 500 * time.Millisecond // a worker's log file, only while shown
	logMinRepaint = 200 * time.Millisecond // a log burst repaints at most this often
)

// logsScreen is the Logs tab: a worker's log or the app's own (UI thread only).
type logsScreen struct {
	u       *UI
	source  *widget.Select
	follow  *widget.Check
	view    *widget.Label // selectable
	scroll  *container.Scroll
	path    *tipLabel
	openBt  *widget.Button
	visible bool
	text    string
	// stopTail ends the worker-log tailer; nil when none runs.
	stopTail context.CancelFunc
	content  fyne.CanvasObject
}

func newLogsScreen(u *UI) *logsScreen {
	s := &logsScreen{u: u}
	s.source = widget.NewSelect([]string{appLogSource}, func(string) { s.sourceChanged() })
	s.follow = widget.NewCheck("Follow", nil)
	s.follow.SetChecked(true)
	s.follow.OnChanged = func(on bool) {
		if on {
			s.refreshNow()
		}
	}
	// A label, not a TextGrid: a grid draws every character as an object of its own
	// (12 MB more for a screen of log); a label draws a line as one, and selects too.
	// In the UI's font, not monospace: Fyne parses a text style's bundled face and the
	// system face it pairs with it (3 MB for monospace), and log lines are key=value
	// text that needs no columns.
	s.view = widget.NewLabel("")
	s.view.Selectable = true
	s.scroll = container.NewScroll(s.view) // it scrolls, so it can follow
	copyBt := u.newCopyButton("Copy", "Copy the log shown", func() string { return s.text })
	s.openBt = widget.NewButtonWithIcon("Open file", theme.FileTextIcon(), s.openFile)
	s.path = newTipLabel(u.tips, "")
	s.path.Importance = widget.LowImportance
	bar := container.NewBorder(nil, nil,
		container.NewHBox(widget.NewLabel("Log of"),
			container.NewGridWrap(fyne.NewSize(260, s.source.MinSize().Height), s.source), s.follow),
		container.NewHBox(copyBt, s.openBt), s.path)
	s.content = container.NewBorder(container.NewPadded(bar), nil, nil, nil, s.scroll)
	s.source.SetSelected(appLogSource)
	return s
}

// start follows the app's own log ring: a burst of lines wakes this once, and repaints
// are spaced by logMinRepaint.
func (s *logsScreen) start() {
	changes, unsub := s.u.core.Log().Subscribe()
	s.u.goBackground(func(ctx context.Context) {
		defer unsub()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes:
			}
			text := s.u.core.Log().String()
			s.u.do(func() {
				if s.source.Selected == appLogSource {
					s.setText(text)
				}
			})
			select {
			case <-ctx.Done():
				return
			case <-time.After(logMinRepaint):
			}
		}
	})
}

// shown is called when the Logs tab is selected; hidden when another is.
func (s *logsScreen) shown() {
	s.visible = true
	s.refreshSources()
	s.text = "" // force the first paint
	s.sourceChanged()
}

func (s *logsScreen) hidden() {
	s.visible = false
	s.stopTailer()
}

// showWorkerLog opens the Logs tab on worker id's log.
func (u *UI) showWorkerLog(id string) {
	u.logs.refreshSources()
	u.logs.source.SetSelected(id)
	u.tabs.Select(u.tabLogs)
}

func (s *logsScreen) refreshSources() {
	opts := []string{appLogSource}
	for _, e := range s.u.hive.List() {
		opts = append(opts, e.ID)
	}
	s.source.SetOptions(opts)
}

func (s *logsScreen) sourceChanged() {
	s.stopTailer()
	id := s.source.Selected
	if id == appLogSource || id == "" {
		s.path.SetText("")
		s.openBt.Disable()
		s.show(s.u.core.Log().String())
		return
	}
	file, err := s.u.hive.LogFile(id)
	if err != nil {
		s.path.SetText("")
		s.openBt.Disable()
		s.show("No log: " + err.Error())
		return
	}
	s.path.SetText(file)
	s.openBt.Enable()
	if lines, err := s.u.hive.LogTail(id, logTailLines); err == nil {
		s.show(strings.Join(lines, "\n"))
	}
	if s.visible {
		s.startTailer(id, file)
	}
}

// startTailer polls the worker's log file size while the tab is shown and follows it.
func (s *logsScreen) startTailer(id, file string) {
	ctx, cancel := context.WithCancel(s.u.ctx)
	s.stopTail = cancel
	s.u.goBackground(func(context.Context) {
		t := time.NewTicker(logPollPeriod)
		defer t.Stop()
		var lastSize int64 = -1
		var lastMod time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := os.Stat(file)
			if err != nil || (st.Size() == lastSize && st.ModTime().Equal(lastMod)) {
				continue
			}
			lastSize, lastMod = st.Size(), st.ModTime()
			lines, err := s.u.hive.LogTail(id, logTailLines)
			if err != nil {
				continue
			}
			text := strings.Join(lines, "\n")
			s.u.do(func() {
				if ctx.Err() == nil && s.follow.Checked {
					s.setText(text)
				}
			})
		}
	})
}

func (s *logsScreen) stopTailer() {
	if s.stopTail != nil {
		s.stopTail()
		s.stopTail = nil
	}
}

// refreshNow reloads the selected log at once (on the UI thread: a tail is a short read
// of a bounded file).
func (s *logsScreen) refreshNow() {
	id := s.source.Selected
	if id == appLogSource || id == "" {
		s.setText(s.u.core.Log().String())
		return
	}
	lines, err := s.u.hive.LogTail(id, logTailLines)
	if err != nil {
		s.setText("No log: " + err.Error())
		return
	}
	s.setText(strings.Join(lines, "\n"))
}

// setText shows text unless paused (Follow off) or unchanged, and scrolls to the end.
func (s *logsScreen) setText(text string) {
	if !s.follow.Checked || text == s.text {
		return
	}
	s.show(text)
}

// show shows text even while paused (another source was picked). While the tab is
// hidden it only keeps the text: laying out a log is deferred until someone looks.
func (s *logsScreen) show(text string) {
	s.text = text
	if !s.visible {
		return
	}
	s.view.SetText(text)
	s.scroll.ScrollToBottom()
}

func (s *logsScreen) openFile() {
	if s.path.Text == "" {
		return
	}
	u, err := url.Parse(storage.NewFileURI(s.path.Text).String())
	if err == nil {
		err = s.u.app.OpenURL(u)
	}
	if err != nil {
		s.u.showError(fmt.Errorf("open %s: %w", s.path.Text, err))
	}
}
