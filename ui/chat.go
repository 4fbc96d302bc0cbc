package ui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2/driver/desktop"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/wire"
)

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

// chatTargets lists the local workers that serve, then the Queen's models.
func (u *UI) chatTargets() []chat.Target {
	var out []chat.Target
	token := ""
	var qs app.QueenState
	if u.core != nil {
		qs = u.core.QueenState()
		s := u.core.Settings()
		switch s.QueenMode {
		case app.QueenEmbedded:
			token = s.EmbeddedToken
		case app.QueenRemote:
			token = s.RemoteToken
		}
	}
	if u.hive != nil {
		for _, e := range u.hive.List() {
			if e.State != hive.StateReady && e.State != hive.StateStarting {
				continue
			}
			out = append(out, chat.Target{Kind: chat.TargetWorker, BaseURL: e.URL(), Model: e.Model,
				WorkerID: e.ID, ModelPath: e.ModelPath, Token: token})
		}
	}
	sortTargets(out)
	if qs.URL != "" {
		seen := map[string]bool{}
		for _, w := range qs.Workers {
			if w.State == wire.StateOnline && !seen[w.Model] {
				seen[w.Model] = true
				out = append(out, chat.Target{Kind: chat.TargetQueen, BaseURL: qs.URL, Model: w.Model, Token: token})
			}
		}
		if len(seen) == 0 { // still offer the Queen, so its state shows in the picker
			out = append(out, chat.Target{Kind: chat.TargetQueen, BaseURL: qs.URL, Token: token})
		}
	}
	return out
}

func targetKey(t chat.Target) string {
	if t.Kind == chat.TargetQueen {
		return "queen|" + t.BaseURL + "|" + t.Model
	}
	return "worker|" + t.WorkerID + "|" + t.BaseURL
}

// reach is a target's probe result.
type reach struct {
	ok     bool
	models []string
	err    string
}

func targetLabel(t chat.Target, r *reach) string {
	var s string
	if t.Kind == chat.TargetQueen {
		model := t.Model
		if model == "" {
			model = "no model online"
		}
		s = fmt.Sprintf("Queen · %s (any online worker)", model)
	} else {
		s = fmt.Sprintf("%s · %s", t.WorkerID, t.Model)
	}
	switch {
	case r == nil:
		return s + " · checking…"
	case r.ok:
		return s + " · reachable"
	default:
		return s + " · unreachable"
	}
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
	input       *chatInput
	send, stop  *widget.Button
	system      *widget.Entry
	temp, topP  *widget.Entry
	maxTokens   *widget.Entry
	newChat     *widget.Button
	deleteChat  *widget.Button
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
	refresh := widget.NewButtonWithIcon("", theme.ViewRefreshIcon(), func() { v.refreshTargets() })

	v.system = widget.NewMultiLineEntry()
	v.system.SetPlaceHolder("System prompt (optional)")
	v.system.SetMinRowsVisible(2)
	v.temp, v.topP, v.maxTokens = widget.NewEntry(), widget.NewEntry(), widget.NewEntry()
	settings := widget.NewAccordion(widget.NewAccordionItem("Settings", container.NewVBox(
		v.system,
		container.NewGridWithColumns(6,
			widget.NewLabel("Temperature"), v.temp,
			widget.NewLabel("Top p"), v.topP,
			widget.NewLabel("Max tokens"), v.maxTokens),
	)))

	v.msgs = container.NewVBox()
	v.scroll = container.NewVScroll(v.msgs)
	v.input = newChatInput()
	v.input.SetPlaceHolder("Message (Ctrl+Enter or Shift+Enter sends)")
	v.input.OnSubmitted = func(string) { v.sendInput() } // Enter alone starts a new line
	v.input.SetMinRowsVisible(3)
	v.send = widget.NewButtonWithIcon("Send", theme.MailSendIcon(), func() { v.sendInput() })
	v.send.Importance = widget.HighImportance
	v.stop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), func() { v.stopStream() })
	v.stop.Importance = widget.DangerImportance
	v.stop.Hide()
	bottom := container.NewBorder(nil, nil, nil, container.NewVBox(v.send, v.stop), v.input)

	top := container.NewVBox(container.NewBorder(nil, nil, widget.NewLabel("Target"), refresh, v.targetSel), v.targetInfo, settings)
	main := container.NewBorder(top, bottom, nil, nil, v.scroll)

	v.list = widget.NewList(func() int { return len(v.summaries) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			s := v.summaries[i]
			o.(*widget.Label).SetText(s.Title + "\n" + s.Updated.Local().Format("Jan 2 15:04") + "  " + s.Model)
		})
	v.list.OnSelected = func(i widget.ListItemID) {
		if i < len(v.summaries) && (v.conv == nil || v.summaries[i].ID != v.conv.ID) {
			v.open(v.summaries[i].ID)
		}
	}
	v.newChat = widget.NewButtonWithIcon("New chat", theme.ContentAddIcon(), func() { v.startNew() })
	v.deleteChat = widget.NewButtonWithIcon("Delete", theme.DeleteIcon(), func() { v.confirmDelete() })
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

// chatInput is the multi-line message box. Fyne submits a multi-line Entry on
// Shift+Enter only; chat users also expect Ctrl+Enter, which reaches the focused widget
// as a shortcut.
type chatInput struct {
	widget.Entry
}

func newChatInput() *chatInput {
	e := &chatInput{}
	e.MultiLine = true
	// As widget.NewMultiLineEntry: no word wrap, whose layout cost grows with the square
	// of a line's length (a pasted page would freeze the window).
	e.Wrapping = fyne.TextWrap(fyne.TextTruncateClip)
	e.ExtendBaseWidget(e)
	return e
}

// TypedShortcut sends on Ctrl+Enter and leaves every other shortcut to the Entry.
func (e *chatInput) TypedShortcut(s fyne.Shortcut) {
	if cs, ok := s.(*desktop.CustomShortcut); ok && cs.Modifier == fyne.KeyModifierControl &&
		(cs.KeyName == fyne.KeyReturn || cs.KeyName == fyne.KeyEnter) && e.OnSubmitted != nil {
		e.OnSubmitted(e.Text)
		return
	}
	e.Entry.TypedShortcut(s)
}

// follow refreshes the targets when the hive or the Queen changes.
func (v *chatView) follow() {
	if v.u.hive == nil {
		return
	}
	events, unsub := v.u.hive.Subscribe()
	var appCh <-chan struct{}
	unsubApp := func() {}
	if v.u.core != nil {
		appCh, unsubApp = v.u.core.Subscribe()
	}
	v.u.goBackground(func(ctx context.Context) {
		defer unsub()
		defer unsubApp()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-appCh:
			}
			// Coalesce a burst (a spawn sends several events) into one refresh and probe.
			settle := time.NewTimer(250 * time.Millisecond)
		drain:
			for {
				select {
				case <-ctx.Done():
					settle.Stop()
					return
				case _, ok := <-events:
					if !ok {
						events = nil
					}
				case <-appCh:
				case <-settle.C:
					break drain
				}
			}
			v.u.do(v.refreshTargets)
		}
	})
}

// refreshTargets lists the targets and probes each in the background.
func (v *chatView) refreshTargets() {
	v.probeSerial++
	serial := v.probeSerial
	v.u.goBackground(func(ctx context.Context) {
		targets := v.deps.targets()
		v.u.do(func() {
			if serial != v.probeSerial {
				return
			}
			v.targets = targets
			v.renderTargets()
		})
		for _, t := range targets {
			models, err := v.deps.client.Probe(ctx, t.BaseURL, t.Token, 2*time.Second)
			r := &reach{ok: err == nil, models: models}
			if err != nil {
				r.err = err.Error()
			}
			key := targetKey(t)
			v.u.do(func() {
				v.reach[key] = r
				v.renderTargets()
			})
		}
	})
}

// renderTargets fills the picker, keeping the conversation's own target even when it
// is gone, so the user sees it and its state.
func (v *chatView) renderTargets() {
	opts := make([]string, 0, len(v.targets)+1)
	present := false
	for _, t := range v.targets {
		opts = append(opts, targetLabel(t, v.reach[targetKey(t)]))
		if v.conv != nil && targetKey(t) == targetKey(v.conv.Target) {
			present = true
		}
	}
	if v.conv != nil && v.conv.Target.BaseURL != "" && !present {
		gone := v.conv.Target
		v.targets = append(v.targets, gone)
		v.reach[targetKey(gone)] = &reach{err: "not running"}
		opts = append(opts, targetLabel(gone, v.reach[targetKey(gone)]))
	}
	v.targetSel.Options = opts
	// A new chat takes the first target that answers (or the first one, until probed),
	// so the common case, one local worker, needs no picking.
	if v.conv != nil && v.conv.Target.BaseURL == "" && len(v.targets) > 0 {
		v.conv.Target = v.targets[0]
		for _, t := range v.targets {
			if r := v.reach[targetKey(t)]; r != nil && r.ok {
				v.conv.Target = t
				break
			}
		}
	}
	if i := v.currentIndex(); i >= 0 {
		v.targetSel.SetSelectedIndex(i)
	} else {
		v.targetSel.ClearSelected()
	}
	v.targetSel.Refresh()
	v.showTargetInfo()
}

// currentIndex is the conversation target's position in v.targets, or -1.
func (v *chatView) currentIndex() int {
	if v.conv == nil || v.conv.Target.BaseURL == "" {
		return -1
	}
	for i, t := range v.targets {
		if targetKey(t) == targetKey(v.conv.Target) {
			return i
		}
	}
	return -1
}

func (v *chatView) targetChanged() {
	i := v.targetSel.SelectedIndex()
	if i < 0 || i >= len(v.targets) || v.conv == nil {
		return
	}
	v.conv.Target = v.targets[i]
	v.showTargetInfo()
}

func (v *chatView) showTargetInfo() {
	i := v.currentIndex()
	if i < 0 && len(v.targets) > 0 {
		v.targetInfo.SetText("Choose a worker or the Queen above.")
		return
	}
	if i < 0 {
		v.targetInfo.SetText("No target: spawn a worker on the Workers or Models screen, or set a Queen.")
		return
	}
	t := v.targets[i]
	r := v.reach[targetKey(t)]
	switch {
	case r == nil:
		v.targetInfo.SetText(t.BaseURL + ": checking…")
	case r.ok:
		v.targetInfo.SetText(fmt.Sprintf("%s serves %s", t.BaseURL, strings.Join(r.models, ", ")))
	default:
		v.targetInfo.SetText(fmt.Sprintf("%s is unreachable: %s", t.BaseURL, r.err))
	}
}

// useWorker makes workerID the target, in a new chat unless the current one is empty.
func (v *chatView) useWorker(workerID string) {
	if v.conv != nil && len(v.conv.Messages) > 0 && v.conv.Target.WorkerID != workerID {
		v.startNew()
	}
	// Take the fresh list now: a worker spawned a moment ago must not show as "not
	// running" until the background refresh lands.
	v.targets = v.deps.targets()
	for _, t := range v.targets {
		if t.Kind == chat.TargetWorker && t.WorkerID == workerID {
			v.conv.Target = t
		}
	}
	v.renderTargets()
	v.refreshTargets()
}

// currentTarget is the chosen target with its token (the stored one has none).
func (v *chatView) currentTarget() (chat.Target, bool) {
	i := v.currentIndex()
	if i < 0 {
		return chat.Target{}, false
	}
	return v.targets[i], true
}

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
	mv.body.ParseMarkdown("…")

	ctx, cancel := context.WithCancel(v.u.ctx)
	v.cancel = cancel
	v.streamID++
	id := v.streamID
	v.setStreaming(true)

	r := newStreamRenderer(v.deps.repaint, v.u.do, func(text string) {
		mv.setMarkdown(text)
		v.scroll.ScrollToBottom()
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
		v.scroll.ScrollToBottom()
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
	v.scroll.ScrollToBottom()
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

// messageView is one turn on screen.
type messageView struct {
	box     *fyne.Container
	role    *widget.Label
	body    *widget.RichText
	metrics *widget.Label
	errText *widget.Label
	action  *widget.Button
	regen   *widget.Button // assistant messages only
	text    string         // what Copy copies
}

func newMessageView(v *chatView, m chat.Message) *messageView {
	mv := &messageView{body: widget.NewRichText(), metrics: widget.NewLabel(""), errText: widget.NewLabel(""), text: m.Content}
	mv.body.Wrapping = fyne.TextWrapWord
	mv.metrics.Importance = widget.LowImportance
	mv.errText.Wrapping = fyne.TextWrapWord
	mv.errText.Importance = widget.DangerImportance
	role := "You"
	if m.Role == "assistant" {
		role = "Assistant"
	}
	mv.role = widget.NewLabelWithStyle(role, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	copyBtn := widget.NewButtonWithIcon("", theme.ContentCopyIcon(), func() {
		v.u.app.Clipboard().SetContent(mv.text)
	})
	copyBtn.Importance = widget.LowImportance
	head := container.NewHBox(mv.role, copyBtn)
	if m.Role == "assistant" {
		mv.regen = widget.NewButtonWithIcon("Regenerate", theme.ViewRefreshIcon(), func() { v.regenerate() })
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
		mv.body.Segments = boundSegments([]widget.RichTextSegment{&widget.TextSegment{Text: m.Content, Style: widget.RichTextStyleParagraph}})
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
	mv.body.Segments = boundSegments(widget.NewRichTextFromMarkdown(text).Segments)
	mv.body.Refresh()
}

// maxLineRunes bounds how long a line of one text segment may run before it is cut.
// Fyne's word wrap measures the whole rest of a line for every row it lays out, so a
// pasted 20,000-character paragraph took seconds (quadratic); pieces of bounded length
// keep the cost linear.
const maxLineRunes = 1500

// boundSegments prepares Markdown segments for Fyne's wrapping, working around two of its
// limits. First, it joins the inline pieces of a paragraph that share one style (goldmark
// gives one per source line): Fyne v2.7.1 lays an inline segment that starts less than a
// character's width from the right edge out one character per row, which turned model
// answers with line breaks into vertical text. Second, it cuts lines longer than
// maxLineRunes at spaces into pieces that each end their row (not inline, for the same
// reason), so a huge paragraph costs linear time; the last piece keeps the style.
func boundSegments(segs []widget.RichTextSegment) []widget.RichTextSegment {
	out := make([]widget.RichTextSegment, 0, len(segs))
	for _, seg := range joinInline(segs) {
		ts, ok := seg.(*widget.TextSegment)
		if !ok || len(ts.Text) <= maxLineRunes {
			out = append(out, seg)
			continue
		}
		pieces := splitLongLines(ts.Text, maxLineRunes)
		for i, p := range pieces {
			piece := &widget.TextSegment{Text: p, Style: ts.Style}
			if i < len(pieces)-1 {
				piece.Style.Inline = false
			}
			out = append(out, piece)
		}
	}
	return out
}

// joinInline merges each run of inline text segments of one style into one segment, the
// way a soft line break reads: as a space.
func joinInline(segs []widget.RichTextSegment) []widget.RichTextSegment {
	out := make([]widget.RichTextSegment, 0, len(segs))
	for _, seg := range segs {
		ts, ok := seg.(*widget.TextSegment)
		if ok && len(out) > 0 {
			if prev, ok := out[len(out)-1].(*widget.TextSegment); ok && prev.Style.Inline && prev.Style == ts.Style {
				joined := strings.TrimRight(prev.Text, " ")
				if joined != "" && ts.Text != "" {
					joined += " "
				}
				out[len(out)-1] = &widget.TextSegment{Text: joined + ts.Text, Style: prev.Style}
				continue
			}
		}
		out = append(out, seg)
	}
	return out
}

// splitLongLines cuts text after a space once a line has run limit runes (or anywhere at
// 2×limit when there is no space); the pieces concatenate back to text.
func splitLongLines(text string, limit int) []string {
	var pieces []string
	start, run := 0, 0 // the piece's first byte; runes since the piece start or the last newline
	for i, r := range text {
		switch {
		case r == '\n':
			run = -1
		case run >= 2*limit:
			pieces = append(pieces, text[start:i])
			start, run = i, 0
		case r == ' ' && run >= limit:
			pieces = append(pieces, text[start:i+1])
			start, run = i+1, -1
		}
		run++
	}
	if start < len(text) || len(pieces) == 0 {
		pieces = append(pieces, text[start:])
	}
	return pieces
}

// show paints a finished answer: text, metrics, and the error with its way out.
func (mv *messageView) show(m chat.Message) {
	mv.setMarkdown(m.Content)
	if m.Metrics != nil {
		mv.metrics.SetText(metricsText(*m.Metrics, m.Stopped))
		mv.metrics.Show()
	} else if m.Stopped {
		mv.metrics.SetText("stopped")
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
		mv.action.OnTapped = func() { v.u.openSpawnDialog(t.ModelPath) }
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

func metricsText(m chat.Metrics, stopped bool) string {
	s := fmt.Sprintf("%d tokens · %.1f tok/s · first token %s", m.CompletionTokens, m.TokensPerSecond, m.TimeToFirstToken.Round(time.Millisecond))
	if stopped {
		s += " · stopped"
	}
	return s
}

// streamRenderer coalesces a stream's pieces and repaints the accumulated text on the UI
// thread at most once per interval. Add and Close run on the stream goroutine.
type streamRenderer struct {
	th   *chat.Throttle
	text strings.Builder // owned by the throttle's flush, which runs one at a time
}

func newStreamRenderer(interval time.Duration, do func(func()), paint func(text string)) *streamRenderer {
	r := &streamRenderer{}
	r.th = chat.NewThrottle(interval, func(pending string) {
		r.text.WriteString(pending)
		snapshot := r.text.String()
		do(func() { paint(snapshot) })
	})
	return r
}

func (r *streamRenderer) Add(piece string) { r.th.Add(piece) }
func (r *streamRenderer) Close()           { r.th.Close() }

// sortTargets orders workers by id, then the Queen's models: stable picker entries.
func sortTargets(ts []chat.Target) {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Kind != ts[j].Kind {
			return ts[i].Kind == chat.TargetWorker
		}
		return targetKey(ts[i]) < targetKey(ts[j])
	})
}
