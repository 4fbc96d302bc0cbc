package ui

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// settingsScreen is the Settings tab (UI thread only).
type settingsScreen struct {
	u          *UI
	models     *keyEntry
	portMin    *keyEntry
	portMax    *keyEntry
	llamaLib   *keyEntry
	backend    *widget.Select
	backends   []string // the backend of each of backend's options; "" = auto
	suggestion *widget.Label
	stopOnQuit *widget.Check
	heartbeat  *keyEntry
	idleTTL    *keyEntry
	modelTTL   *widget.Entry
	saveBt     *widget.Button
	saved      *widget.Label
	content    fyne.CanvasObject
}

func newSettingsScreen(u *UI) *settingsScreen {
	s := &settingsScreen{u: u}
	st := u.core.Settings()
	s.models = newKeyEntry(s.save, nil)
	s.models.SetText(st.ModelsFolder)
	s.portMin = newKeyEntry(s.save, nil)
	s.portMin.SetText(strconv.Itoa(st.PortMin))
	s.portMax = newKeyEntry(s.save, nil)
	s.portMax.SetText(strconv.Itoa(st.PortMax))
	s.llamaLib = newKeyEntry(s.save, nil)
	s.llamaLib.SetPlaceHolder("installed runtime (beekeeper runtime install)")
	s.llamaLib.SetText(st.LlamaLib)
	s.backend = widget.NewSelect(nil, nil)
	s.fillBackends(st.Backend)
	s.suggestion = widget.NewLabel("")
	s.suggestion.Importance = widget.LowImportance
	s.suggestion.Wrapping = fyne.TextWrapWord
	u.goBackground(func(context.Context) {
		sug := llamaruntime.Suggest() // reads driver files and `ldconfig -p`: off the UI thread
		u.do(func() {
			s.suggestion.SetText(fmt.Sprintf("This machine has %s: the %s build suits it. "+
				"A runtime folder set above overrides the backend.", sug.Reason, sug.Backend))
		})
	})
	s.stopOnQuit = widget.NewCheck("Stop workers when the app quits", nil)
	s.stopOnQuit.SetChecked(st.StopWorkersOnQuit)
	s.heartbeat = newKeyEntry(s.save, nil)
	s.heartbeat.SetText(st.HeartbeatInterval.String())
	s.idleTTL = newKeyEntry(s.save, nil)
	s.idleTTL.SetText(st.IdleTTL.String())
	s.modelTTL = widget.NewMultiLineEntry()
	s.modelTTL.SetPlaceHolder("stories260K = 30m")
	s.modelTTL.SetMinRowsVisible(2)
	s.modelTTL.SetText(app.FormatModelTTLs(st.ModelTTL))

	folder := func(e *keyEntry) *widget.Button {
		return widget.NewButton("Choose…", func() {
			d := dialog.NewFolderOpen(func(l fyne.ListableURI, err error) {
				if err != nil {
					u.showError(err)
					return
				}
				if l != nil {
					e.SetText(l.Path())
				}
			}, u.win)
			d.Resize(fyne.NewSize(760, 520))
			d.Show()
		})
	}
	ports := container.NewGridWithColumns(3, s.portMin, widget.NewLabelWithStyle("to", fyne.TextAlignCenter, fyne.TextStyle{}), s.portMax)
	keep := widget.NewLabel("Off: workers keep running after the app quits and are re-adopted at the next start.")
	keep.Importance = widget.LowImportance
	keep.Wrapping = fyne.TextWrapWord
	form := widget.NewForm(
		widget.NewFormItem("Models folder", container.NewBorder(nil, nil, nil, folder(s.models), s.models)),
		widget.NewFormItem("Worker ports", ports),
		widget.NewFormItem("llama.cpp runtime", container.NewBorder(nil, nil, nil, folder(s.llamaLib), s.llamaLib)),
		widget.NewFormItem("llama.cpp backend", container.NewVBox(s.backend, s.suggestion)),
		widget.NewFormItem("On quit", container.NewVBox(s.stopOnQuit, keep)),
		widget.NewFormItem("Embedded Queen heartbeat", s.heartbeat),
		widget.NewFormItem("Unload idle models after", container.NewVBox(s.idleTTL, lowNote(
			"Models loaded for a request to the Queen's endpoint stop after this long unused (0 keeps them "+
				"loaded); the next request loads them again. Workers you spawn keep running."))),
		widget.NewFormItem("Per model", container.NewVBox(s.modelTTL, lowNote("One per line: model name = duration."))),
	)
	s.saveBt = widget.NewButton("Save", s.save)
	s.saveBt.Importance = widget.HighImportance
	s.saved = widget.NewLabel("")
	s.saved.Importance = widget.LowImportance
	note := widget.NewLabel("Port range and runtime folder apply at once, to the next worker spawned " +
		"(running workers keep theirs); the heartbeat interval from the next start of the embedded Queen.")
	note.Wrapping = fyne.TextWrapWord
	note.Importance = widget.LowImportance
	s.content = container.NewVScroll(container.NewPadded(container.NewVBox(
		form, container.NewHBox(s.saveBt, s.saved), note)))
	return s
}

// read turns the form into settings, naming the field that is wrong.
func (s *settingsScreen) read() (app.Settings, error) {
	st := s.u.core.Settings()
	st.ModelsFolder = strings.TrimSpace(s.models.Text)
	st.LlamaLib = strings.TrimSpace(s.llamaLib.Text)
	if i := s.backend.SelectedIndex(); i >= 0 {
		st.Backend = s.backends[i]
	}
	st.StopWorkersOnQuit = s.stopOnQuit.Checked
	var err error
	if st.PortMin, err = strconv.Atoi(strings.TrimSpace(s.portMin.Text)); err != nil {
		return st, &app.SettingsError{Field: "port range", Problem: "the first port must be a number such as 8080"}
	}
	if st.PortMax, err = strconv.Atoi(strings.TrimSpace(s.portMax.Text)); err != nil {
		return st, &app.SettingsError{Field: "port range", Problem: "the last port must be a number such as 8200"}
	}
	if st.HeartbeatInterval, err = time.ParseDuration(strings.TrimSpace(s.heartbeat.Text)); err != nil {
		return st, &app.SettingsError{Field: "heartbeat interval", Problem: "a duration such as 5s or 500ms"}
	}
	if st.IdleTTL, err = time.ParseDuration(strings.TrimSpace(s.idleTTL.Text)); err != nil {
		return st, &app.SettingsError{Field: "unload idle models after", Problem: "a duration such as 5m or 1h, or 0 to keep them loaded"}
	}
	if st.ModelTTL, err = app.ParseModelTTLs(s.modelTTL.Text); err != nil {
		return st, err
	}
	return st, nil
}

func (s *settingsScreen) save() {
	st, err := s.read()
	if err == nil {
		err = s.u.core.SaveSettings(st)
	}
	if err != nil {
		s.u.showError(err)
		return
	}
	s.saved.SetText("Saved " + time.Now().Format("15:04:05"))
	s.fillBackends(st.Backend) // a build installed meanwhile loses its hint
}

// fillBackends lists auto and this platform's builds, each not installed with the
// command that installs it, and selects chosen.
func (s *settingsScreen) fillBackends(chosen string) {
	labels := []string{"auto ($" + llamaruntime.EnvBackend + ", else " + llamaruntime.DefaultBackend() + ")"}
	s.backends = []string{""}
	for _, b := range llamaruntime.Builds() {
		label := b.Backend
		if !b.Installed() {
			label += " — not installed: run `beekeeper runtime install --backend " + b.Backend + "`"
		}
		labels = append(labels, label)
		s.backends = append(s.backends, b.Backend)
	}
	s.backend.SetOptions(labels)
	for i, b := range s.backends {
		if b == chosen {
			s.backend.SetSelectedIndex(i)
			return
		}
	}
	s.backend.SetSelectedIndex(0)
}

// lowNote is a wrapping, low-importance explanation under a form field.
func lowNote(text string) *widget.Label {
	l := widget.NewLabel(text)
	l.Importance = widget.LowImportance
	l.Wrapping = fyne.TextWrapWord
	return l
}
