package ui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
)

// The Chat screen: the conversation list, the conversation with its settings, sending
// and the streamed answer. Its targets are in chat_targets.go, a message's view in
// chat_message.go, the Markdown in richtext.go, the stream's plumbing in chat_stream.go.

// chatDeps is what the Chat screen talks to; tests hand in their own target list.
type chatDeps struct {
	store   *chat.Store
	client  *chat.Client
	targets func() []chat.Target // candidate targets, tokens included; called off the UI thread
	// repaint is the streaming view's repaint interval (chat.DefaultRepaintInterval).
	repaint time.Duration
}

// chatTab builds the Chat screen on the app's hive, Queen and data folder.
func (u *UI) chatTab() fyne.CanvasObject {
	store, err := chat.OpenStore(filepath.Join(dirs.Data(), "chats"))
	if err != nil {
		return widget.NewLabel("Chats cannot be stored: " + err.Error())
	}
	v := newChatView(u, chatDeps{store: store, client: chat.NewClient(nil), targets: u.chatTargets, repaint: chat.DefaultRepaintInterval})
	v.follow()
	u.chat = v
	return v
}

// openChat selects the Chat tab with workerID as the target.
func (u *UI) openChat(workerID string) {
	if u.chat == nil {
		return // chats cannot be stored: the tab says why
	}
	if u.tabs != nil {
		u.tabs.Select(u.tabChat)
	}
	u.chat.useWorker(workerID)
}

// chatView is the Chat screen. Every field is touched on the UI thread only; the stream
// goroutine hands text over through a chat.Throttle and u.do.
type chatView struct {
	widget.BaseWidget
	u    *UI
	deps chatDeps

	conv      *chat.Conversation
	targets   []chat.Target
	reach     map[string]*reach
	summaries []chat.Summary
	views     []*messageView // one per conv.Messages entry

	// streaming: cancel stops the live answer; streamID tells a stale finish apart.
	cancel   context.CancelFunc
	streamID int

	targetSel   *widget.Select
	targetInfo  *widget.Label
	list        *widget.List
	msgs        *fyne.Container
	scroll      *container.Scroll
	pinned      bool // the view follows the conversation's end (until the user scrolls up)
	input       *chatInput
	send, stop  *widget.Button
	system      *widget.Entry
	temp, topP  *widget.Entry
	maxTokens   *widget.Entry
	newChat     *tipButton
	deleteChat  *tipButton
	content     fyne.CanvasObject
	probeSerial int
}

func newChatView(u *UI, deps chatDeps) *chatView {
	if deps.repaint <= 0 {
		deps.repaint = chat.DefaultRepaintInterval
	}
	v := &chatView{u: u, deps: deps, reach: map[string]*reach{}}
	v.ExtendBaseWidget(v)

	v.targetSel = widget.NewSelect(nil, func(string) { v.targetChanged() })
	v.targetSel.PlaceHolder = "Choose a worker or the Queen"
	v.targetInfo = widget.NewLabel("")
	v.targetInfo.Importance = widget.LowImportance
	v.targetInfo.Wrapping = fyne.TextWrapWord // an unreachable target's error is long
	refresh := newTipButton(u.tips, "", theme.ViewRefreshIcon(), "Look for workers and the Queen again", func() { v.refreshTargets() })

	v.system = widget.NewMultiLineEntry()
	v.system.SetPlaceHolder("System prompt (optional)")
	v.system.SetMinRowsVisible(2)
	v.temp, v.topP, v.maxTokens = widget.NewEntry(), widget.NewEntry(), widget.NewEntry()
	// Three short fields side by side while they fit, one under the other when not: six
	// grid columns asked for 625 px of the window.
	settings := widget.NewAccordion(widget.NewAccordionItem("Settings", container.NewVBox(
		v.system,
		container.NewAdaptiveGrid(3,
			labelled("Temperature", v.temp), labelled("Top p", v.topP), labelled("Max tokens", v.maxTokens)),
	)))

	v.msgs = container.New(pinLayout{v})
	v.scroll = container.NewVScroll(v.msgs)
	v.scroll.OnScrolled = func(fyne.Position) { v.pinned = v.atEnd() }
	v.input = newChatInput()
	v.input.SetPlaceHolder("Message (Enter sends, Shift+Enter adds a line)")
	v.input.OnSubmitted = func(string) { v.sendInput() }
	v.input.SetMinRowsVisible(3)
	v.send = widget.NewButtonWithIcon("Send", theme.MailSendIcon(), func() { v.sendInput() })
	v.send.Importance = widget.HighImportance
	v.stop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), func() { v.stopStream() })
	v.stop.Importance = widget.DangerImportance
	v.stop.Hide()
	bottom := container.NewBorder(nil, nil, nil, container.NewVBox(v.send, v.stop), v.input)

	top := container.NewVBox(container.NewBorder(nil, nil, widget.NewLabel("Target"), refresh, v.targetSel), v.targetInfo, settings)
	main := container.NewBorder(top, bottom, nil, nil, v.scroll)

	// Each entry is two one-line labels that truncate (the title with a tooltip): one
	// two-line label overflowed the one-line row the template measured.
	v.list = widget.NewList(func() int { return len(v.summaries) },
		func() fyne.CanvasObject {
			title := newTipLabel(u.tips, "")
			title.TextStyle.Bold = true
			when := widget.NewLabel("")
			when.Truncation = fyne.TextTruncateEllipsis
			when.Importance = widget.LowImportance
			return container.New(layout.NewCustomPaddedVBoxLayout(0), title, when)
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.summaries) {
				return
			}
			s := v.summaries[i]
			rows := o.(*fyne.Container).Objects
			setText(&rows[0].(*tipLabel).Label, s.Title)
			setText(rows[1].(*widget.Label), s.Updated.Local().Format("Jan 2 15:04")+" · "+s.Model)
		})
	v.list.OnSelected = func(i widget.ListItemID) {
		if i < len(v.summaries) && (v.conv == nil || v.summaries[i].ID != v.conv.ID) {
			v.open(v.summaries[i].ID)
		}
	}
	v.newChat = newTipButton(u.tips, "New", theme.ContentAddIcon(), "Start a new chat", func() { v.startNew() })
	v.deleteChat = newTipButton(u.tips, "Delete", theme.DeleteIcon(), "Delete this chat (asks first)", func() { v.confirmDelete() })
	side := container.NewBorder(container.NewGridWithColumns(2, v.newChat, v.deleteChat), nil, nil, nil, v.list)

	split := container.NewHSplit(side, main)
	split.Offset = 0.22
	v.content = split

	v.startNew()
	v.reloadList()
	v.refreshTargets()
	return v
}

// CreateRenderer draws the screen.
func (v *chatView) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(v.content) }

func (v *chatView) readParams() (chat.Params, error) {
	var p chat.Params
	var err error
	if p.Temperature, err = strconv.ParseFloat(strings.TrimSpace(v.temp.Text), 64); err != nil || p.Temperature < 0 || p.Temperature > 2 {
		return p, &formError{"Temperature", "a number from 0 to 2"}
	}
	if p.TopP, err = strconv.ParseFloat(strings.TrimSpace(v.topP.Text), 64); err != nil || p.TopP <= 0 || p.TopP > 1 {
		return p, &formError{"Top p", "a number above 0, at most 1"}
	}
	if s := strings.TrimSpace(v.maxTokens.Text); s != "" {
		if p.MaxTokens, err = strconv.Atoi(s); err != nil || p.MaxTokens < 0 {
			return p, &formError{"Max tokens", "a whole number, 0 or empty for no limit"}
		}
	}
	return p, nil
}

func (v *chatView) showParams(c *chat.Conversation) {
	v.system.SetText(c.SystemPrompt)
	v.temp.SetText(strconv.FormatFloat(c.Params.Temperature, 'g', -1, 64))
	v.topP.SetText(strconv.FormatFloat(c.Params.TopP, 'g', -1, 64))
	v.maxTokens.SetText(strconv.Itoa(c.Params.MaxTokens))
}

// sendInput sends the message box's text as the next user turn.
func (v *chatView) sendInput() {
	if v.cancel != nil {
		return
	}
	text := strings.TrimSpace(v.input.Text)
	if text == "" {
		return
	}
	t, ok := v.applySettings()
	if !ok {
		return
	}
	v.conv.Messages = append(v.conv.Messages, chat.Message{Role: "user", Content: text, At: time.Now()})
	v.conv.AutoTitle()
	v.addView(len(v.conv.Messages) - 1)
	v.input.SetText("")
	v.save(v.conv)
	v.generate(t)
}

// applySettings copies the chosen target, parameters and system prompt into the
// conversation; on a missing target or a bad parameter it shows why and reports false.
func (v *chatView) applySettings() (chat.Target, bool) {
	t, ok := v.currentTarget()
	if !ok {
		v.u.showError(&formError{"Target", "choose a worker or the Queen first"})
		return chat.Target{}, false
	}
	p, err := v.readParams()
	if err != nil {
		v.u.showError(err)
		return chat.Target{}, false
	}
	v.conv.Target, v.conv.Params, v.conv.SystemPrompt = t, p, v.system.Text
	return t, true
}

// regenerate drops the last answer and asks again.
func (v *chatView) regenerate() {
	if v.cancel != nil || len(v.conv.Messages) == 0 || v.conv.Messages[len(v.conv.Messages)-1].Role != "assistant" {
		return
	}
	t, ok := v.applySettings()
	if !ok {
		return
	}
	last := len(v.conv.Messages) - 1
	v.conv.Messages = v.conv.Messages[:last]
	v.msgs.Remove(v.views[last].box)
	v.views = v.views[:last]
	v.generate(t)
}

// generate streams the next answer into a new assistant message.
func (v *chatView) generate(t chat.Target) {
	conv := v.conv
	msgs := conv.WireMessages()
	params := conv.Params
	conv.Messages = append(conv.Messages, chat.Message{Role: "assistant", At: time.Now()})
	idx := len(conv.Messages) - 1
	mv := v.addView(idx)
	mv.body.Segments = plainSegments("…")
	mv.body.Refresh()
	v.pinned = true // the user asked: show the answer as it comes

	ctx, cancel := context.WithCancel(v.u.ctx)
	v.cancel = cancel
	v.streamID++
	id := v.streamID
	v.setStreaming(true)

	r := newStreamRenderer(v.deps.repaint, v.u.do, func(text string) {
		mv.setMarkdown(text)
		v.followEnd()
	})
	v.u.goBackground(func(context.Context) {
		defer cancel()
		res, err := v.deps.client.Stream(ctx, t, msgs, params, r.Add)
		r.Close()
		v.u.do(func() { v.finish(conv, idx, mv, id, t, res, err) })
	})
}

// finish records the answer in its conversation (saved even when the user moved on).
func (v *chatView) finish(conv *chat.Conversation, idx int, mv *messageView, id int, t chat.Target, res chat.Result, err error) {
	m := &conv.Messages[idx]
	m.Content = res.Text
	if t.Kind == chat.TargetQueen {
		m.AnsweredBy = res.Worker // the Queen chose it: say which, now and after a restart
	}
	if res.Text != "" {
		metrics := res.Metrics
		m.Metrics = &metrics
	}
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		m.Stopped = true
	default:
		m.ErrorKind, m.Error = chat.Explain(err, t)
	}
	v.save(conv)
	if id == v.streamID {
		v.cancel = nil
		v.setStreaming(false)
	}
	if conv == v.conv {
		mv.show(*m)
		mv.bindAction(v, conv.Target, *m)
		v.followEnd()
	}
}

func (v *chatView) stopStream() {
	if v.cancel != nil {
		v.cancel()
	}
}

func (v *chatView) setStreaming(on bool) {
	if on {
		v.send.Disable()
		v.stop.Show()
	} else {
		v.send.Enable()
		v.stop.Hide()
	}
	v.updateRegenerate()
}

// updateRegenerate shows Regenerate on the last answer only, and not while streaming.
func (v *chatView) updateRegenerate() {
	for i, mv := range v.views {
		if mv.regen == nil {
			continue
		}
		if i == len(v.views)-1 && v.cancel == nil {
			mv.regen.Show()
		} else {
			mv.regen.Hide()
		}
	}
}

func (v *chatView) save(c *chat.Conversation) {
	if err := v.deps.store.Save(c); err != nil {
		v.u.showError(err)
		return
	}
	v.reloadList()
}

func (v *chatView) reloadList() {
	list, damaged := v.deps.store.List()
	for _, err := range damaged {
		if v.u.core != nil {
			v.u.core.Logger().Warn("chat not listed", "err", err)
		}
	}
	v.summaries = list
	v.list.Refresh()
	for i, s := range list {
		if v.conv != nil && s.ID == v.conv.ID {
			v.list.Select(i)
			return
		}
	}
	v.list.UnselectAll()
}

// startNew begins an empty chat on the current target.
func (v *chatView) startNew() {
	v.stopStream()
	prev := v.conv
	v.conv = chat.NewConversation()
	if prev != nil {
		v.conv.Target, v.conv.SystemPrompt, v.conv.Params = prev.Target, prev.SystemPrompt, prev.Params
	}
	v.showConversation()
}

// open shows a stored chat.
func (v *chatView) open(id string) {
	c, err := v.deps.store.Load(id)
	if err != nil {
		v.u.showError(err)
		return
	}
	v.stopStream()
	v.conv = c
	v.showConversation()
}

func (v *chatView) showConversation() {
	v.msgs.RemoveAll()
	v.views = v.views[:0]
	for i := range v.conv.Messages {
		v.addView(i)
	}
	v.showParams(v.conv)
	v.renderTargets()
	v.updateRegenerate()
	v.pinned = true // a chat opens at its end; pinLayout keeps it there as the text wraps
	v.followEnd()
	v.reloadList()
}

func (v *chatView) confirmDelete() {
	c := v.conv
	if c == nil {
		return
	}
	if _, err := v.deps.store.Load(c.ID); errors.Is(err, chat.ErrNotFound) {
		v.startNew() // never saved: nothing to ask about
		return
	}
	title := c.Title
	if title == "" {
		title = "this chat"
	}
	d := dialog.NewConfirm("Delete chat", fmt.Sprintf("Delete %q? This cannot be undone.", title), func(ok bool) {
		if !ok {
			return
		}
		v.stopStream()
		if err := v.deps.store.Delete(c.ID); err != nil {
			v.u.showError(err)
			return
		}
		v.conv = nil
		v.startNew()
		v.reloadList()
	}, v.u.win)
	v.u.showDialog(d)
}

// addView appends the view of conv.Messages[i].
func (v *chatView) addView(i int) *messageView {
	mv := newMessageView(v, v.conv.Messages[i])
	v.views = append(v.views, mv)
	v.msgs.Add(mv.box)
	v.updateRegenerate()
	return mv
}

// atEnd reports whether the conversation's end is in view.
func (v *chatView) atEnd() bool {
	return v.scroll.Offset.Y+v.scroll.Size().Height >= v.msgs.MinSize().Height-1
}

// followEnd scrolls to the conversation's end while the view is pinned there.
func (v *chatView) followEnd() {
	if v.pinned && !v.atEnd() {
		v.scroll.ScrollToBottom()
	}
}

// pinLayout stacks the messages as a VBox does, and keeps the view at the end while it
// is pinned there. Scrolling right after the messages are added is not enough: wrapped
// text only knows its height once laid out at the view's width, so a reopened chat
// stopped short of its end.
type pinLayout struct{ v *chatView }

func (l pinLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	return layout.NewVBoxLayout().MinSize(objs)
}

func (l pinLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	layout.NewVBoxLayout().Layout(objs, size)
	l.v.followEnd()
}

// labelled puts a field's name before it.
func labelled(name string, field fyne.CanvasObject) fyne.CanvasObject {
	return container.NewBorder(nil, nil, widget.NewLabel(name), nil, field)
}

// setText sets a label's text only when it changed: a label re-shapes its text on every
// refresh.
func setText(l *widget.Label, text string) {
	if l.Text != text {
		l.SetText(text)
	}
}
