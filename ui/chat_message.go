package ui

import (
	"fmt"
	"strconv"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/chat"
)

// messageView is one turn on screen.
type messageView struct {
	box     *fyne.Container
	role    *widget.Label
	body    *widget.RichText
	metrics *widget.Label
	errText *widget.Label
	action  *widget.Button
	copyBt  *tipButton
	regen   *tipButton // assistant messages only
	text    string     // what Copy copies
}

func newMessageView(v *chatView, m chat.Message) *messageView {
	mv := &messageView{body: widget.NewRichText(), metrics: widget.NewLabel(""), errText: widget.NewLabel(""), text: m.Content}
	mv.body.Wrapping = fyne.TextWrapWord
	mv.metrics.Importance = widget.LowImportance
	mv.metrics.Wrapping = fyne.TextWrapWord
	mv.errText.Wrapping = fyne.TextWrapWord
	mv.errText.Importance = widget.DangerImportance
	role := "You"
	if m.Role == "assistant" {
		role = "Assistant"
	}
	mv.role = widget.NewLabelWithStyle(role, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	mv.copyBt = v.u.newCopyButton("", "Copy this message", func() string { return mv.text })
	mv.copyBt.Importance = widget.LowImportance
	head := container.NewHBox(mv.role, mv.copyBt)
	if m.Role == "assistant" {
		mv.regen = newTipButton(v.u.tips, "Regenerate", theme.ViewRefreshIcon(), "Ask again for a new answer", func() { v.regenerate() })
		mv.regen.Importance = widget.LowImportance
		mv.regen.Hide()
		head.Add(mv.regen)
	}
	mv.action = widget.NewButton("", nil)
	mv.action.Hide()
	mv.box = container.NewVBox(head, mv.body, container.NewBorder(nil, nil, nil, mv.action, mv.errText), mv.metrics)
	mv.errText.Hide()
	mv.metrics.Hide()
	if m.Role == "user" {
		mv.body.Segments = plainSegments(m.Content)
		mv.body.Refresh()
	} else {
		mv.show(m)
		mv.bindAction(v, v.conv.Target, m)
	}
	return mv
}

// setMarkdown repaints the streamed text so far.
func (mv *messageView) setMarkdown(text string) {
	mv.text = text
	mv.body.Segments = boundSegments(markdownSegments(text))
	mv.body.Refresh()
}

// show paints a finished answer: text, metrics, and the error with its way out.
func (mv *messageView) show(m chat.Message) {
	mv.setMarkdown(m.Content)
	if line := metricsLine(m); line != "" {
		mv.metrics.SetText(line)
		mv.metrics.Show()
	}
	if m.Error != "" {
		mv.errText.SetText(m.Error)
		mv.errText.Show()
	}
}

// bindAction offers the way out of an inline error.
func (mv *messageView) bindAction(v *chatView, t chat.Target, m chat.Message) {
	switch m.ErrorKind {
	case chat.ErrWorkerGone:
		if t.ModelPath == "" {
			return
		}
		mv.action.SetText("Respawn " + t.Model)
		mv.action.OnTapped = func() { v.u.openRespawnDialog(t) }
	case chat.ErrContextExceeded:
		mv.action.SetText("New chat")
		mv.action.OnTapped = v.startNew
	case chat.ErrQueenUnreachable:
		if v.u.tabs == nil || v.u.tabQueen == nil {
			return
		}
		mv.action.SetText("Queen screen")
		mv.action.OnTapped = func() { v.u.tabs.Select(v.u.tabQueen) }
	case chat.ErrBusy:
		mv.action.SetText("Regenerate")
		mv.action.OnTapped = v.regenerate
	default:
		return
	}
	mv.action.Show()
}

// metricsLine is the line under an answer: its speed, whether it was stopped, and which
// worker answered when the Queen chose it ("" when there is nothing to say).
func metricsLine(m chat.Message) string {
	s := ""
	switch {
	case m.Metrics != nil:
		s = fmt.Sprintf("%d tokens · %.1f tok/s · first token %s", m.Metrics.CompletionTokens,
			m.Metrics.TokensPerSecond, m.Metrics.TimeToFirstToken.Round(time.Millisecond))
		if m.Stopped {
			s += " · stopped"
		}
	case m.Stopped:
		s = "stopped"
	}
	if m.AnsweredBy != "" {
		if s != "" {
			s += " · "
		}
		s += "answered by " + m.AnsweredBy
	}
	return s
}

// openRespawnDialog opens the spawn dialog for a worker that is gone, filled in with the
// settings it was spawned with while the hive still has its record (it keeps crashed and
// exited workers until they are removed): context size, threads, type and port, so the
// respawned worker gets the same id and the chat goes on with it.
func (u *UI) openRespawnDialog(t chat.Target) {
	u.openSpawnDialog(t.ModelPath)
	if u.hive == nil || u.spawn == nil {
		return
	}
	e, ok := u.hive.Get(t.WorkerID)
	if !ok {
		return
	}
	f := u.spawn
	if e.WorkerType != "" {
		f.wtype.SetText(e.WorkerType)
	}
	if e.CtxSize > 0 {
		f.ctxSize.SetText(strconv.Itoa(e.CtxSize))
	}
	if e.Threads > 0 {
		f.threads.SetText(strconv.Itoa(e.Threads))
	}
	if e.GPULayers != "" && !f.layers.Disabled() {
		f.layers.SetText(e.GPULayers)
	}
	if e.Port > 0 && !e.State.Live() {
		f.port.SetText(strconv.Itoa(e.Port))
	}
}
