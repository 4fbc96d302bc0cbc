package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"
)

// chatInput is the message box, with every chat app's keys: Enter sends, Shift+Enter
// adds a line (Fyne's multi-line Entry does the opposite), Ctrl+Enter sends too.
type chatInput struct {
	widget.Entry
	shift bool // a Shift key is down
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

// KeyDown notes Shift, then leaves the key to the Entry (it selects with Shift too).
func (e *chatInput) KeyDown(ev *fyne.KeyEvent) {
	if ev.Name == desktop.KeyShiftLeft || ev.Name == desktop.KeyShiftRight {
		e.shift = true
	}
	e.Entry.KeyDown(ev)
}

// KeyUp notes Shift's release.
func (e *chatInput) KeyUp(ev *fyne.KeyEvent) {
	if ev.Name == desktop.KeyShiftLeft || ev.Name == desktop.KeyShiftRight {
		e.shift = false
	}
	e.Entry.KeyUp(ev)
}

// FocusLost forgets Shift: its release may go to another window.
func (e *chatInput) FocusLost() {
	e.shift = false
	e.Entry.FocusLost()
}

// TypedKey sends on Enter and adds a line on Shift+Enter.
func (e *chatInput) TypedKey(ev *fyne.KeyEvent) {
	if ev.Name != fyne.KeyReturn && ev.Name != fyne.KeyEnter {
		e.Entry.TypedKey(ev)
		return
	}
	if !e.shift {
		e.submit()
		return
	}
	// The Entry adds a line for Enter unless Shift is down and OnSubmitted is set: with
	// it unset for this key, Shift+Enter adds the line (over a selection, too).
	submit := e.OnSubmitted
	e.OnSubmitted = nil
	e.Entry.TypedKey(ev)
	e.OnSubmitted = submit
}

// TypedShortcut sends on Ctrl+Enter and leaves every other shortcut to the Entry.
func (e *chatInput) TypedShortcut(s fyne.Shortcut) {
	if cs, ok := s.(*desktop.CustomShortcut); ok && cs.Modifier == fyne.KeyModifierControl &&
		(cs.KeyName == fyne.KeyReturn || cs.KeyName == fyne.KeyEnter) {
		e.submit()
		return
	}
	e.Entry.TypedShortcut(s)
}

func (e *chatInput) submit() {
	if e.OnSubmitted != nil && !e.Disabled() {
		e.OnSubmitted(e.Text)
	}
}
