package ui

import (
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
)

// The Queen as one OpenAI endpoint (issue 12): the Queen screen's Models part shows the
// base URL a client is given, a copy button, and every model a client may name with its
// state (loaded and by how many workers, loading, loadable), for the embedded Queen and
// a remote one alike. The list is app.EndpointStatus, asked for while the screen is shown
// (with the workers' load, queenLoadPeriod) and at once when the Queen's workers change.

// endpointCols are the columns of the endpoint's model list (fitTable).
var endpointCols = []tableColumn{
	{title: "Model", width: 220, grow: true},
	{title: "State", width: 200},
	{title: "Where", width: 170, grow: true, keep: 1},
}

// ownedByQueen is the owned_by of a model an online worker serves (queen.Models): it
// names no hive.
const ownedByQueen = "beekeeper"

// Columns of the endpoint's model list.
const (
	ecolModel = iota
	ecolState
	ecolWhere
)

// endpointPart is the endpoint's URL row and model list (UI thread only).
type endpointPart struct {
	mode    app.QueenMode
	base    string // the base URL shown ("http://…/v1"); "" when there is no endpoint
	url     *tipLabel
	copyBt  *tipButton
	key     *widget.Label // the API key a client needs, when the Queen has a token
	row     *fyne.Container
	models  []app.EndpointModel
	asked   bool   // an answer (or an error) arrived from this endpoint's Queen
	err     string // the last ask's error, "" after a good one
	list    *widget.Table
	fit     *fitTable
	empty   *widget.Label
	content fyne.CanvasObject
	// changed runs after the number of models changed (the sub-tab's title).
	changed func()
}

func newEndpointPart(u *UI) *endpointPart {
	e := &endpointPart{changed: func() {}}
	e.url = newTipLabel(u.tips, "")
	e.url.tip = "Put it where an OpenAI client asks for its base URL, and name any model below: " +
		"one that is not loaded loads on the first request."
	e.copyBt = u.newCopyButton("Copy", "Copy the endpoint's base URL", func() string { return e.base })
	e.key = widget.NewLabel("API key: the Queen's token")
	e.key.Importance = widget.LowImportance
	title := widget.NewLabelWithStyle("OpenAI endpoint", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	e.row = container.New(&shrinkOneLayout{shrink: e.url, want: func() float32 {
		// The whole URL, with a pixel or two to spare: the window's renderer cut it
		// with "…" at exactly its measured width.
		return fyne.MeasureText(e.url.Text, theme.TextSize(), e.url.TextStyle).Width + 2*theme.InnerPadding() + 4
	}}, title, e.url, e.copyBt, e.key)

	e.list = widget.NewTable(
		func() (int, int) { return len(e.models), len(e.fit.shown) },
		func() fyne.CanvasObject { return newTipLabel(u.tips, "") },
		func(id widget.TableCellID, o fyne.CanvasObject) {
			col := e.fit.col(id.Col)
			if id.Row >= len(e.models) || col < 0 {
				return
			}
			text, imp, tip := endpointModelCell(e.models[id.Row], col)
			l := o.(*tipLabel)
			l.tip = tip
			if l.Text != text || l.Importance != imp {
				l.Importance = imp
				l.SetText(text)
			}
		},
	)
	e.fit = newFitTable(e.list, endpointCols)
	e.list.ShowHeaderRow = true
	e.list.CreateHeader = func() fyne.CanvasObject {
		return widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	}
	e.list.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if c := e.fit.col(id.Col); c >= 0 {
			o.(*widget.Label).SetText(endpointCols[c].title)
		}
	}
	e.empty = widget.NewLabel("")
	e.empty.Wrapping = fyne.TextWrapWord
	e.empty.Alignment = fyne.TextAlignCenter
	body := container.NewStack(e.fit.holder, container.New(readableLayout{maxWidth: 560}, e.empty))
	e.content = container.NewBorder(e.row, nil, nil, nil, body)
	e.showEmpty()
	return e
}

// setQueen follows the Queen picture: the endpoint is the Queen's URL plus /v1, its
// models are forgotten when the Queen changes. hasToken says whether clients need one.
func (e *endpointPart) setQueen(st app.QueenState, hasToken bool) {
	e.mode = st.Mode
	base := endpointBase(st.URL)
	changed := base != e.base || e.key.Visible() != hasToken
	if base != e.base {
		e.base = base
		e.url.SetText(base)
		e.asked, e.err = false, ""
		e.setModels(nil)
	}
	setVisible(e.row, base != "")
	setVisible(e.key, hasToken)
	if changed {
		e.row.Refresh() // the row lays out by the URL's width; Show alone does not
	}
	e.showEmpty()
}

// endpointBase is the base URL an OpenAI client is given for a Queen at queenURL.
func endpointBase(queenURL string) string {
	if queenURL == "" {
		return ""
	}
	return strings.TrimRight(queenURL, "/") + "/v1"
}

// setStatus shows an answer of the Queen at queenURL; an answer for a Queen no longer
// shown is dropped, and an error keeps the models last seen.
func (e *endpointPart) setStatus(queenURL string, models []app.EndpointModel, err error) {
	if endpointBase(queenURL) != e.base || e.base == "" {
		return
	}
	e.asked = true
	if err != nil {
		e.err = err.Error()
	} else {
		e.err = ""
		e.setModels(models)
	}
	e.showEmpty()
}

// setModels repaints the list only when a shown cell would change.
func (e *endpointPart) setModels(models []app.EndpointModel) {
	if slices.EqualFunc(models, e.models, sameEndpointModel) {
		return
	}
	n := len(e.models)
	e.models = models
	e.list.Refresh()
	if len(models) != n {
		e.changed()
	}
}

func sameEndpointModel(a, b app.EndpointModel) bool {
	return a.Name == b.Name && a.Status == b.Status && a.Where == b.Where && slices.Equal(a.Workers, b.Workers)
}

// showEmpty says why the list is empty, or hides the note when it is not.
func (e *endpointPart) showEmpty() {
	text := ""
	switch {
	case e.mode == app.QueenOff:
		text = "Queenless: there is no endpoint. With the embedded dev Queen on, this app is an " +
			"OpenAI endpoint for the programs on this machine: any model of its models folder can " +
			"be named, and it loads on the first request."
	case e.base == "":
		text = "No endpoint: the Queen is not running (see above)."
	case len(e.models) > 0:
	case !e.asked:
		text = "Asking the Queen for its models…"
	case e.err != "":
		text = "The Queen's models could not be read: " + e.err
	default:
		text = "No models yet. The Queen lists what its hives can load (this app's models " +
			"folder among them: add .gguf files on the Models screen) and what its workers serve."
	}
	if e.empty.Text != text {
		e.empty.SetText(text)
	}
	setVisible(e.empty, text != "")
	setVisible(e.fit.holder, text == "")
}

// endpointModelCell is a cell of the endpoint's model list: its text, colour, tooltip.
func endpointModelCell(m app.EndpointModel, col int) (string, widget.Importance, string) {
	plain := widget.MediumImportance
	switch col {
	case ecolModel:
		return m.Name, plain, ""
	case ecolState:
		n := len(m.Workers)
		switch m.Status {
		case app.ModelLoaded:
			return "loaded · " + plural(n, "worker") + ", busy", widget.SuccessImportance,
				"answering requests now"
		case app.ModelIdle:
			return "loaded · " + plural(n, "worker"), widget.SuccessImportance,
				"loaded, no request in flight"
		case app.ModelLoading:
			return "loading…", widget.WarningImportance,
				"a hive is starting a worker for it; requests that name it wait for it"
		case app.ModelLoadable:
			return "loadable", plain,
				"not loaded: the first request that names it loads it on " + m.Where
		}
		return m.Status, plain, ""
	case ecolWhere:
		if len(m.Workers) > 0 {
			return strings.Join(m.Workers, ", "), plain, "served by " + strings.Join(m.Workers, ", ")
		}
		if m.Where == "" || m.Where == ownedByQueen {
			return "—", widget.LowImportance, ""
		}
		return "on " + m.Where, plain, "the hive that loads it"
	}
	return "", plain, ""
}

// shrinkOneLayout sets its objects side by side, left aligned, each as wide as it asks;
// when they do not fit, shrink gives up the width (a label that cuts with "…"), so the
// button after the URL stays beside it instead of at the far edge.
type shrinkOneLayout struct {
	shrink fyne.CanvasObject
	want   func() float32 // the width shrink's whole content needs (its MinSize is less)
}

// shrinkMin is the least width left to the shrinking object.
const shrinkMin = 60

func (l *shrinkOneLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	pad := theme.Padding()
	total := float32(0)
	shown := 0
	width := func(o fyne.CanvasObject) float32 {
		if o == l.shrink {
			return l.want()
		}
		return o.MinSize().Width
	}
	for _, o := range objs {
		if o.Visible() {
			total += width(o)
			shown++
		}
	}
	over := total + pad*float32(max(shown-1, 0)) - size.Width
	x := float32(0)
	for _, o := range objs {
		if !o.Visible() {
			continue
		}
		w := width(o)
		if o == l.shrink && over > 0 {
			w = max(w-over, shrinkMin)
		}
		o.Resize(fyne.NewSize(w, size.Height))
		o.Move(fyne.NewPos(x, 0))
		x += w + pad
	}
}

func (l *shrinkOneLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	pad := theme.Padding()
	var w, h float32
	shown := 0
	for _, o := range objs {
		if !o.Visible() {
			continue
		}
		m := o.MinSize()
		if o == l.shrink {
			m.Width = min(m.Width, shrinkMin)
		}
		w += m.Width
		h = max(h, m.Height)
		shown++
	}
	return fyne.NewSize(w+pad*float32(max(shown-1, 0)), h)
}
