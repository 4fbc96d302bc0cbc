package ui

import (
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
)

// Only the Workers screen is in the window at start: the others (and the fonts their
// text styles load) come in when their tab is first shown, and then stay.
func TestHiddenTabsAttachTheirScreensWhenFirstShown(t *testing.T) {
	tu := newTestUI(t)
	screens := map[*container.TabItem]fyne.CanvasObject{
		tu.tabQueen:    tu.queen.content,
		tu.tabLogs:     tu.logs.content,
		tu.tabSettings: tu.settings.content,
		tu.tabChat:     tu.chat,
	}
	tu.onUI(func() {
		if tu.tabWorkers.Content != tu.workers.content {
			t.Fatal("the Workers tab does not hold the Workers screen at start")
		}
		for tab, screen := range screens {
			if tab.Content == screen {
				t.Errorf("the %s screen is in the window before its tab was shown", tab.Text)
			}
		}
		for tab, screen := range screens {
			tu.tabs.Select(tab)
			if tab.Content != screen {
				t.Errorf("showing the %s tab did not bring in its screen (it holds %T)", tab.Text, tab.Content)
			}
		}
		tu.tabs.Select(tu.tabWorkers)
		for tab, screen := range screens {
			if tab.Content != screen {
				t.Errorf("the %s screen left when another tab was shown", tab.Text)
			}
		}
	})
}

// TestTabsMoveTheFocus: showing Chat puts the focus in its message box; leaving a screen
// takes the focus from its fields (typing went to a box out of sight, and its blinking
// cursor repainted the window for ever: 4 % of a core while idle).
func TestTabsMoveTheFocus(t *testing.T) {
	tu := newTestUI(t)
	tu.onUI(func() {
		c := tu.win.Canvas()
		tu.tabs.Select(tu.tabChat)
		if c.Focused() != tu.chat.input {
			t.Fatalf("the Chat screen shown, the focus is on %T, want the message box", c.Focused())
		}
		tu.tabs.Select(tu.tabWorkers)
		if c.Focused() != nil {
			t.Fatalf("back on Workers, the focus stayed on %T", c.Focused())
		}
	})
}
