package ui

import (
	"context"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Tooltips: Fyne 2.7 has none, so the window's content carries a layer of its own above
// the screens where one tooltip at a time is placed by hand. A pop-up would not do: it
// covers the window and takes the pointer's hover from the widget it explains.

// tipDelay is how long the pointer rests on a widget before its tooltip shows.
var tipDelay = 500 * time.Millisecond

// tipMaxWidth bounds a tooltip; longer texts wrap.
const tipMaxWidth = 420

// tipLayer shows the tooltips (UI thread only). A nil *tipLayer shows none.
type tipLayer struct {
	u      *UI
	layer  *fyne.Container // the window-wide layer; its MinSize is zero
	box    *fyne.Container // the tooltip: background and text
	text   *widget.Label
	at     fyne.Position // where the pointer is, in window coordinates
	cancel context.CancelFunc
}

func newTipLayer(u *UI) *tipLayer {
	t := &tipLayer{u: u, text: widget.NewLabel("")}
	t.text.Wrapping = fyne.TextWrapWord
	bg := canvas.NewRectangle(theme.Color(theme.ColorNameOverlayBackground))
	bg.StrokeColor = theme.Color(theme.ColorNameInputBorder)
	bg.StrokeWidth = 1
	bg.CornerRadius = theme.Size(theme.SizeNameInputRadius)
	t.box = container.NewStack(bg, t.text)
	t.box.Hide()
	t.layer = container.New(tipLayout{t}, t.box)
	return t
}

// hover starts the wait for text's tooltip at the pointer's window position.
func (t *tipLayer) hover(at fyne.Position, text string) {
	if t == nil || text == "" {
		return
	}
	t.leave()
	t.at = at
	ctx, cancel := context.WithCancel(t.u.ctx)
	t.cancel = cancel
	t.u.goBackground(func(context.Context) {
		wait := time.NewTimer(tipDelay)
		defer wait.Stop()
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		t.u.do(func() {
			if ctx.Err() == nil {
				t.show(text)
			}
		})
	})
}

// move follows the pointer while the tooltip waits.
func (t *tipLayer) move(at fyne.Position) {
	if t != nil && !t.box.Visible() {
		t.at = at
	}
}

// leave hides the tooltip, or stops the wait for it.
func (t *tipLayer) leave() {
	if t == nil {
		return
	}
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	if t.box.Visible() {
		t.box.Hide()
	}
}

// show puts text under the pointer, inside the window.
func (t *tipLayer) show(text string) {
	t.text.SetText(text)
	t.box.Show()
	t.layer.Refresh()
}

// shown is the tooltip's text while one shows, else "".
func (t *tipLayer) shown() string {
	if t == nil || !t.box.Visible() {
		return ""
	}
	return t.text.Text
}

// tipLayout places the tooltip below the pointer, kept inside the layer; it asks for no
// room, so a long tooltip never widens the window.
type tipLayout struct{ t *tipLayer }

func (l tipLayout) MinSize([]fyne.CanvasObject) fyne.Size { return fyne.Size{} }

func (l tipLayout) Layout(_ []fyne.CanvasObject, size fyne.Size) {
	t := l.t
	if !t.box.Visible() {
		return
	}
	one := fyne.MeasureText(t.text.Text, theme.TextSize(), fyne.TextStyle{})
	pad := 2 * theme.InnerPadding()
	w := min(one.Width+pad, tipMaxWidth, size.Width)
	h := t.text.MinSize().Height
	t.box.Resize(fyne.NewSize(w, h)) // the label wraps at w, then says its height
	h = t.box.MinSize().Height
	t.box.Resize(fyne.NewSize(w, h))
	x := min(t.at.X, size.Width-w)
	y := t.at.Y + 20 // below the pointer, clear of its hot spot
	if y+h > size.Height {
		y = t.at.Y - h - 4
	}
	t.box.Move(fyne.NewPos(max(x, 0), max(y, 0)))
}

// tipButton is a button with a tooltip that says what it does.
type tipButton struct {
	widget.Button
	tips *tipLayer
	tip  string
}

func newTipButton(tips *tipLayer, label string, icon fyne.Resource, tip string, tapped func()) *tipButton {
	b := &tipButton{tips: tips, tip: tip}
	b.Text, b.Icon, b.OnTapped = label, icon, tapped
	b.ExtendBaseWidget(b)
	return b
}

// SetTip changes the tooltip (it shows from the next hover).
func (b *tipButton) SetTip(tip string) { b.tip = tip }

// MouseIn starts the tooltip's wait.
func (b *tipButton) MouseIn(ev *desktop.MouseEvent) {
	b.Button.MouseIn(ev)
	b.tips.hover(ev.AbsolutePosition, b.tip)
}

// MouseMoved follows the pointer.
func (b *tipButton) MouseMoved(ev *desktop.MouseEvent) {
	b.Button.MouseMoved(ev)
	b.tips.move(ev.AbsolutePosition)
}

// MouseOut hides the tooltip.
func (b *tipButton) MouseOut() {
	b.Button.MouseOut()
	b.tips.leave()
}

// Tapped hides the tooltip: the user knows what the button does.
func (b *tipButton) Tapped(ev *fyne.PointEvent) {
	b.tips.leave()
	b.Button.Tapped(ev)
}

// tipLabel is a label that truncates with an ellipsis and shows its whole text as a
// tooltip while it is cut, and tip (when set) always.
type tipLabel struct {
	widget.Label
	tips *tipLayer
	tip  string
}

func newTipLabel(tips *tipLayer, text string) *tipLabel {
	l := &tipLabel{tips: tips}
	l.Text = text
	l.Truncation = fyne.TextTruncateEllipsis
	l.ExtendBaseWidget(l)
	return l
}

// cut reports whether the label is too narrow for its text.
func (l *tipLabel) cut() bool {
	if l.Text == "" {
		return false
	}
	need := fyne.MeasureText(l.Text, theme.TextSize(), l.TextStyle).Width + 2*theme.InnerPadding()
	return need > l.Size().Width+0.5
}

// tooltip is what the label's tooltip says now ("" for none).
func (l *tipLabel) tooltip() string {
	switch {
	case l.cut() && l.tip != "":
		return l.Text + "\n" + l.tip
	case l.cut():
		return l.Text
	}
	return l.tip
}

// MouseIn starts the tooltip's wait when there is something to say.
func (l *tipLabel) MouseIn(ev *desktop.MouseEvent) {
	l.tips.hover(ev.AbsolutePosition, l.tooltip())
}

// MouseMoved follows the pointer.
func (l *tipLabel) MouseMoved(ev *desktop.MouseEvent) { l.tips.move(ev.AbsolutePosition) }

// MouseOut hides the tooltip.
func (l *tipLabel) MouseOut() { l.tips.leave() }

// copyFeedback is how long a copy button says "Copied".
const copyFeedback = 1500 * time.Millisecond

// newCopyButton copies what content returns and says so on the button for a moment:
// the clipboard itself shows nothing.
func (u *UI) newCopyButton(label, tip string, content func() string) *tipButton {
	var b *tipButton
	gen := 0 // the latest copy; an older one's reset is dropped
	b = newTipButton(u.tips, label, theme.ContentCopyIcon(), tip, func() {
		u.app.Clipboard().SetContent(content())
		gen++
		mine := gen
		b.SetText("Copied")
		b.SetIcon(theme.ConfirmIcon())
		u.goBackground(func(ctx context.Context) {
			wait := time.NewTimer(copyFeedback)
			defer wait.Stop()
			select {
			case <-ctx.Done():
			case <-wait.C:
				u.do(func() {
					if mine == gen {
						b.SetText(label)
						b.SetIcon(theme.ContentCopyIcon())
					}
				})
			}
		})
	})
	return b
}
