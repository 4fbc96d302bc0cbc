// Package ui owns the desktop app's screens: the tab shell, Workers, the spawn dialog,
// Queen, Logs, Settings and the tray (Chat and Models live in chat.go and models.go).
// Widgets are touched only on the UI thread: background goroutines hop with u.do.
package ui

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/memtrim"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// UI is the desktop app's window and everything on it. The fields below the line are
// the screens' own state; Chat and Models (ui/chat.go, ui/models.go) use app, win, core,
// hive, tabs/tabChat, showError and do.
type UI struct {
	app  fyne.App
	win  fyne.Window
	core *app.App   // settings, Queen mode, the app's log
	hive *hive.Hive // local workers (core.Hive())

	tabs                                                           *container.AppTabs
	tabWorkers, tabChat, tabModels, tabQueen, tabLogs, tabSettings *container.TabItem

	// do runs f on the UI thread: fyne.Do in the app; tests replace it with a lock they
	// also hold while they poke widgets, because the test driver runs fyne.Do inline.
	do func(f func())

	// ctx ends when the UI closes; every goroutine the UI starts watches it and is
	// counted in wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tips     *tipLayer // the window's tooltips
	chat     *chatView // nil when chats cannot be stored
	workers  *workersScreen
	queen    *queenScreen
	logs     *logsScreen
	settings *settingsScreen
	tray     *trayMenu

	detached map[*container.TabItem]fyne.CanvasObject // screens of tabs not shown yet

	dialogs []dialog.Dialog // open dialogs, newest last: Escape closes the newest
	spawn   *spawnForm      // the spawn dialog last opened

	quitApp  func()        // the app's Quit; tests replace it
	quitting dialog.Dialog // the open "Quit?" question, if any
	rootSize fyne.Size     // the window content's size, to see it change
	sizeGen  int           // the latest window resize; an older one's save is dropped
	trimGen  int           // the latest trimSoon; only it trims
	trim     func()        // memtrim.Now; tests count the calls

	quitStarted chan struct{} // closed when the user or a signal quits
	quitOnce    sync.Once
}

// Create builds the window's content on core and starts the UI's bridge goroutine.
// Call Close when the window goes.
func Create(a fyne.App, w fyne.Window, core *app.App) *UI {
	u := newUI(a, w, core, fyne.Do)
	// Closing the window quits too: the size is kept for the next start first.
	w.SetCloseIntercept(func() {
		u.keepWindowSize()
		u.markQuitting()
		w.Close()
	})
	u.start()
	return u
}

// Quit keeps the window's size for the next start and quits, asking nothing (a signal
// means now). Call it on the UI thread.
func (u *UI) Quit() {
	u.keepWindowSize()
	u.markQuitting()
	u.app.Quit()
}

// Quitting is closed once the app starts to quit (Quit, the window closed).
func (u *UI) Quitting() <-chan struct{} { return u.quitStarted }

func (u *UI) markQuitting() {
	if u.quitStarted != nil { // nil in tests that build a bare UI
		u.quitOnce.Do(func() { close(u.quitStarted) })
	}
}

// keepWindowSize saves the window's size, which the next start restores.
func (u *UI) keepWindowSize() {
	app.SaveWindowSize(u.app.Preferences(), u.win.Canvas().Size())
}

// sizeSettle is how long a window size must hold before it is saved: a drag of the
// window's edge resizes it many times.
const sizeSettle = time.Second

// windowResized saves the window's size once it settles. Saving at quit alone is not
// enough: Fyne quits on SIGTERM by itself, and may do so before the app's own handler.
func (u *UI) windowResized() {
	u.sizeGen++
	gen := u.sizeGen
	u.goBackground(func(ctx context.Context) {
		settle := time.NewTimer(sizeSettle)
		defer settle.Stop()
		select {
		case <-ctx.Done():
		case <-settle.C:
			u.do(func() {
				if gen == u.sizeGen {
					u.keepWindowSize()
				}
			})
		}
	})
}

// rootLayout stacks the screens and the tooltip layer over the whole window, and tells
// the UI when the window's size changes.
type rootLayout struct{ u *UI }

func (l rootLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	return layout.NewStackLayout().MinSize(objs)
}

func (l rootLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	layout.NewStackLayout().Layout(objs, size)
	if size != l.u.rootSize {
		l.u.rootSize = size
		l.u.windowResized()
	}
}

func newUI(a fyne.App, w fyne.Window, core *app.App, do func(func())) *UI {
	u := &UI{app: a, win: w, core: core, hive: core.Hive(), do: do,
		detached: make(map[*container.TabItem]fyne.CanvasObject)}
	u.quitApp = u.Quit
	u.quitStarted = make(chan struct{})
	u.trim = memtrim.Now
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.tips = newTipLayer(u)

	u.workers = newWorkersScreen(u)
	u.queen = newQueenScreen(u)
	u.logs = newLogsScreen(u)
	u.settings = newSettingsScreen(u)

	u.tabWorkers = container.NewTabItemWithIcon("Workers", theme.ComputerIcon(), u.workers.content)
	u.tabChat = u.lazyTab("Chat", theme.MailComposeIcon(), orPlaceholder(u.chatTab(), "Chat"))
	u.tabModels = u.lazyTab("Models", theme.StorageIcon(), orPlaceholder(u.modelsTab(), "Models"))
	u.tabQueen = u.lazyTab("Queen", theme.HomeIcon(), u.queen.content)
	u.tabLogs = u.lazyTab("Logs", theme.ListIcon(), u.logs.content)
	u.tabSettings = u.lazyTab("Settings", theme.SettingsIcon(), u.settings.content)
	u.tabs = container.NewAppTabs(u.tabWorkers, u.tabChat, u.tabModels, u.tabQueen, u.tabLogs, u.tabSettings)
	u.tabs.OnSelected = func(t *container.TabItem) {
		u.tips.leave()
		// A field of the screen left behind keeps no focus: typing would go to a field
		// out of sight, and its blinking cursor would repaint the window for ever.
		u.win.Canvas().Unfocus()
		u.attachTab(t)
		if t == u.tabLogs {
			u.logs.shown()
		} else {
			u.logs.hidden()
		}
		if t == u.tabQueen {
			u.queen.shown()
		} else {
			u.queen.hidden()
		}
		if t == u.tabChat && u.chat != nil {
			u.win.Canvas().Focus(u.chat.input) // the Chat screen is for typing
		}
		u.core.Logger().Debug("screen shown", "screen", t.Text)
	}
	w.SetContent(container.New(rootLayout{u}, u.tabs, u.tips.layer))
	w.SetMainMenu(u.mainMenu())
	u.addShortcuts()
	return u
}

// lazyTab makes a tab whose screen is attached when the tab is first shown. Fyne
// measures every tab's content whenever the tabs lay out, and each text style a hidden
// screen uses (monospace for a chat's code, for one) is megabytes of parsed font, kept for
// the life of an app that may sit on the Workers screen all day.
func (u *UI) lazyTab(name string, icon fyne.Resource, screen fyne.CanvasObject) *container.TabItem {
	t := container.NewTabItemWithIcon(name, icon, layout.NewSpacer())
	u.detached[t] = screen
	return t
}

// attachTab puts t's screen in place if it is still detached. Call it on the UI thread.
func (u *UI) attachTab(t *container.TabItem) {
	screen, ok := u.detached[t]
	if !ok {
		return
	}
	delete(u.detached, t)
	t.Content = screen
	u.tabs.Refresh()
	u.trimSoon()
}

// trimSoon hands the garbage of screens' first layouts back to the OS once the user
// has stopped opening new ones for a moment, as cli/gui.go does after the start: an app
// that sits idle for hours keeps those pages otherwise (the Go runtime returns them
// slowly). What stays is what the screens use: widgets, the fonts of their text styles.
func (u *UI) trimSoon() {
	u.trimGen++
	gen := u.trimGen
	u.goBackground(func(ctx context.Context) {
		wait := time.NewTimer(3 * time.Second)
		defer wait.Stop()
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		// u.do may return before f runs (fyne.Do queues it: reading the generation
		// back from it trimmed never), so f decides, and the collection runs off the
		// UI thread.
		u.do(func() {
			if gen == u.trimGen {
				go u.trim()
			}
		})
	})
}

// start launches the bridge and the screens' watchers.
func (u *UI) start() {
	u.tray = newTrayMenu(u)
	u.workers.start()
	u.queen.start()
	u.logs.start()
}

// Close stops the UI's goroutines and waits for them.
func (u *UI) Close() {
	u.cancel()
	u.wg.Wait()
}

// goBackground runs f on a goroutine the UI owns: it ends with the UI.
func (u *UI) goBackground(f func(ctx context.Context)) {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		f(u.ctx)
	}()
}

// mainMenu is the window's menu bar: File (spawn, quit) and View (the screens). Its
// shortcuts work wherever the focus is: Fyne hands every other shortcut to a focused
// text field first, which swallowed Ctrl+N and Ctrl+L.
func (u *UI) mainMenu() *fyne.MainMenu {
	ctrl := func(key fyne.KeyName) fyne.Shortcut {
		return &desktop.CustomShortcut{KeyName: key, Modifier: fyne.KeyModifierShortcutDefault}
	}
	spawn := fyne.NewMenuItem("Spawn worker…", func() {
		u.core.Logger().Debug("spawn dialog opened")
		u.openSpawnDialog("")
	})
	spawn.Shortcut = ctrl(fyne.KeyN)
	quit := fyne.NewMenuItem("Quit", u.quit)
	quit.IsQuit = true
	quit.Shortcut = ctrl(fyne.KeyQ)
	discover := fyne.NewMenuItem("Discover models…", u.openDiscover)
	discover.Shortcut = ctrl(fyne.KeyD)
	file := fyne.NewMenu("File", spawn, discover, fyne.NewMenuItemSeparator(), quit)

	view := fyne.NewMenu("View")
	keys := map[*container.TabItem]fyne.KeyName{u.tabWorkers: fyne.Key1, u.tabChat: fyne.Key2,
		u.tabModels: fyne.Key3, u.tabQueen: fyne.Key4, u.tabLogs: fyne.KeyL, u.tabSettings: fyne.KeyComma}
	for _, tab := range u.tabs.Items {
		item := fyne.NewMenuItem(tab.Text, func() { u.tabs.Select(tab) })
		item.Icon = tab.Icon
		if key, ok := keys[tab]; ok {
			item.Shortcut = ctrl(key)
		}
		view.Items = append(view.Items, item)
	}
	return fyne.NewMainMenu(file, view)
}

// addShortcuts registers the menu's shortcuts on the canvas too (the test driver has no
// menu bar) and Escape for dialogs.
func (u *UI) addShortcuts() {
	c := u.win.Canvas()
	for _, m := range u.win.MainMenu().Items {
		for _, item := range m.Items {
			if item.Shortcut != nil {
				action := item.Action
				c.AddShortcut(item.Shortcut, func(fyne.Shortcut) { action() })
			}
		}
	}
	c.SetOnTypedKey(func(ev *fyne.KeyEvent) {
		if ev.Name == fyne.KeyEscape {
			u.closeTopDialog()
		}
	})
}

// quit quits, first asking while workers run: it says what becomes of them, which the
// "stop workers on quit" setting decides. Quit asked again while the question shows
// quits.
func (u *UI) quit() {
	live := 0
	for _, e := range u.hive.List() {
		if e.State.Live() {
			live++
		}
	}
	if live == 0 || u.quitting != nil {
		u.quitApp()
		return
	}
	fate := "They keep running after Beekeeper quits, and its next start adopts them again. " +
		"(The On quit setting can stop them instead.)"
	if u.core.Settings().StopWorkersOnQuit {
		fate = "Quitting stops them, as the On quit setting says."
	}
	running := "1 worker is running."
	if live > 1 {
		running = fmt.Sprintf("%d workers are running.", live)
	}
	msg := widget.NewLabel(running + " " + fate)
	msg.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustomConfirm("Quit Beekeeper?", "Quit", "Cancel", msg, func(ok bool) {
		if ok {
			u.quitApp()
		}
	}, u.win)
	d.Resize(fyne.NewSize(440, 0))
	u.quitting = d
	u.showDialog(d)
}

// showDialog shows d and tracks it so Escape closes it.
func (u *UI) showDialog(d dialog.Dialog) {
	u.dialogs = append(u.dialogs, d)
	d.SetOnClosed(func() { u.forgetDialog(d) })
	d.Show()
}

func (u *UI) forgetDialog(d dialog.Dialog) {
	if d == u.quitting {
		u.quitting = nil
	}
	for i, open := range u.dialogs {
		if open == d {
			u.dialogs = append(u.dialogs[:i], u.dialogs[i+1:]...)
			return
		}
	}
}

func (u *UI) closeTopDialog() {
	if n := len(u.dialogs); n > 0 {
		u.dialogs[n-1].Hide() // SetOnClosed forgets it
	}
}

// showError shows err in a dialog that names the fix. Call it on the UI thread.
func (u *UI) showError(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	title, fix := explain(err)
	u.core.Logger().Warn(title, "err", err)
	msg := widget.NewLabel(err.Error())
	msg.Wrapping = fyne.TextWrapWord
	msg.Selectable = true
	body := container.NewVBox(msg)
	if fix != "" {
		fixLabel := widget.NewRichTextFromMarkdown("**How to fix:** " + fix)
		fixLabel.Wrapping = fyne.TextWrapWord
		body.Add(widget.NewSeparator())
		body.Add(fixLabel)
	}
	scroll := container.NewVScroll(body)
	scroll.SetMinSize(fyne.NewSize(460, 160))
	d := dialog.NewCustom(title, "Close", scroll, u.win)
	u.showDialog(d)
}

// explain turns an error into a dialog title and the fix, by its type (never its text).
func explain(err error) (title, fix string) {
	var (
		startErr *hive.StartError
		setErr   *app.SettingsError
		queenErr *app.QueenError
		missing  *llamaruntime.MissingError
		pathErr  *modelFileError
	)
	switch {
	case errors.As(err, &pathErr):
		return pathErr.explain()
	case errors.As(err, &setErr): // first: it may wrap the hive's reason (ErrRuntimeMissing)
		return "Setting not saved", fmt.Sprintf("correct the %s.", setErr.Field)
	case errors.Is(err, hive.ErrRuntimeMissing), errors.As(err, &missing):
		return "llama.cpp runtime missing", "run `beekeeper runtime install` (it needs npm), or set the llama.cpp runtime folder in Settings to your own build."
	case errors.Is(err, hive.ErrModelLoad):
		return "The model did not load", "pick a .gguf model file that llama.cpp supports; the worker's last log lines above say why it refused this one."
	case errors.Is(err, hive.ErrPortTaken):
		return "Port already in use", "leave the port on auto, or enter a port no other program uses."
	case errors.Is(err, hive.ErrNoFreePort):
		return "No free port", "widen the port range in Settings, or stop some workers."
	case errors.Is(err, hive.ErrNotReady):
		return "The worker did not become ready", "a large model may need longer: check the worker's log; try a smaller context size."
	case errors.Is(err, hive.ErrWrongWorker):
		return "Another program answers on that port", "choose another port, or stop the program using it."
	case errors.Is(err, hive.ErrBadArgs):
		return "The worker rejected its settings", "check context size, threads and port in the spawn dialog."
	case errors.As(err, &startErr), errors.Is(err, hive.ErrExited):
		return "The worker stopped during start", "read the worker's last log lines above, then try again."
	case errors.Is(err, hive.ErrStillLive):
		return "The worker is still running", "stop it first."
	case errors.Is(err, hive.ErrNotFound):
		return "No such worker", "the list was out of date; it has been refreshed."
	case errors.As(err, &queenErr):
		return "Queen not available", queenErr.Fix + "."
	case errors.As(err, new(*formError)):
		return "Check the form", "correct the field named above."
	}
	return "Something went wrong", ""
}

// formError is a spawn-dialog field that is not acceptable.
type formError struct{ field, problem string }

func (e *formError) Error() string { return e.field + ": " + e.problem }

// orPlaceholder keeps the tab shell standing when a screen has no content to give.
func orPlaceholder(o fyne.CanvasObject, name string) fyne.CanvasObject {
	if o == nil {
		return container.NewCenter(widget.NewLabel(name + " is not available in this build."))
	}
	return o
}
