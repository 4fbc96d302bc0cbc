package ui

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/assets"
)

// trayMenu is the system tray menu: workers running, Queen status, Spawn, Quit (Fyne
// appends Quit). Nil-safe where there is no tray (tests, some desktops).
type trayMenu struct {
	u       *UI
	desk    desktop.App
	menu    *fyne.Menu
	workers *fyne.MenuItem
	queen   *fyne.MenuItem
}

func newTrayMenu(u *UI) *trayMenu {
	desk, ok := u.app.(desktop.App)
	if !ok || !trayAvailable() {
		return nil
	}
	t := &trayMenu{u: u, desk: desk}
	t.workers = fyne.NewMenuItem("No workers running", func() { t.showWindow(u.tabWorkers) })
	t.queen = fyne.NewMenuItem("Queen: off", func() { t.showWindow(u.tabQueen) })
	spawn := fyne.NewMenuItem("Spawn worker…", func() {
		t.showWindow(u.tabWorkers)
		u.openSpawnDialog("")
	})
	show := fyne.NewMenuItem("Show Beekeeper", func() { t.showWindow(nil) })
	t.menu = fyne.NewMenu("Beekeeper", t.workers, t.queen, fyne.NewMenuItemSeparator(), spawn, show)
	desk.SetSystemTrayIcon(assets.Icon)
	desk.SetSystemTrayMenu(t.menu)
	t.update()
	return t
}

func (t *trayMenu) showWindow(tab *container.TabItem) {
	if tab != nil {
		t.u.tabs.Select(tab)
	}
	t.u.win.Show()
	t.u.win.RequestFocus()
}

// update relabels the menu from what the screens show; it repaints only on change.
func (t *trayMenu) update() {
	if t == nil {
		return
	}
	live := 0
	for _, r := range t.u.workers.rows {
		if r.live {
			live++
		}
	}
	workers := "No workers running"
	if live == 1 {
		workers = "1 worker running"
	} else if live > 1 {
		workers = fmt.Sprintf("%d workers running", live)
	}
	st := t.u.queen.state
	queen := "Queen: off"
	switch {
	case st.Mode == app.QueenOff:
	case st.Connected:
		queen = fmt.Sprintf("Queen: connected (%d workers)", len(st.Workers))
	default:
		queen = "Queen: not connected"
	}
	if workers == t.workers.Label && queen == t.queen.Label {
		return
	}
	t.workers.Label, t.queen.Label = workers, queen
	t.menu.Refresh()
}

// trayAvailable reports whether a system tray can work here. On Linux and the BSDs the
// tray speaks D-Bus; without a session bus fyne.io/systray fails to connect and then
// crashes on quit, so the app runs without a tray instead.
func trayAvailable() bool {
	switch runtime.GOOS {
	case "linux", "freebsd", "openbsd", "netbsd":
		if os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" {
			return true
		}
		_, err := exec.LookPath("dbus-launch") // systray autolaunches a bus with it
		return err == nil
	}
	return true
}
