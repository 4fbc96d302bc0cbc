package ui

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/models"
)

// Discover: find a GGUF model on Hugging Face (or the mirror HF_ENDPOINT names), pick a
// quantization by its size, and download it with the Models screen's downloader, whose
// row then shows the progress (Pause, Resume, Cancel, Spawn). Before any search it
// offers a few small recommended models, one click each. Hub calls run off the UI
// thread and end when the dialog closes; a newer call supersedes an older one.

// searchLimit is how many repositories a search lists.
const searchLimit = 40

// discoverView is the Discover panel; its fields are touched on the UI thread only.
type discoverView struct {
	widget.BaseWidget
	u   *UI
	hub *models.Hub
	dir string // the models folder: files already there are marked
	// start hands the downloads over to the Models screen; started runs after it
	// succeeded (the dialog closes and the Models screen shows the progress).
	start   func([]models.Request) error
	started func()

	query     *keyEntry
	searchBtn *widget.Button
	status    *widget.Label // what is happening, or what went wrong and the fix

	results     []models.HubModel
	resultList  *widget.List
	recommended fyne.CanvasObject // the empty state: suggestions, one click each
	recButtons  []*widget.Button  // their Download buttons, in RecommendedModels order

	repo      string // the repository whose files are listed
	repoTitle *widget.Label
	files     []discoverFile
	fileList  *widget.List
	selected  int // index in files; -1 = none
	download  *widget.Button

	ctx     context.Context // ends when the dialog closes
	stop    context.CancelFunc
	cancel  context.CancelFunc // the Hub call in flight, superseded by the next
	calls   int                // the latest call; answers of older ones are dropped
	content fyne.CanvasObject
}

// discoverFile is one downloadable model of the listed repository.
type discoverFile struct {
	f    models.HubFile
	have bool // already in the models folder
}

// openDiscover shows the Discover dialog (the Models screen's "Discover…" button).
func (u *UI) openDiscover() { u.showDiscover() }

// discoverButton is the Models screen's way into Discover.
func (u *UI) discoverButton() *widget.Button {
	b := widget.NewButtonWithIcon("Discover…", theme.SearchIcon(), u.openDiscover)
	b.Importance = widget.HighImportance
	return b
}

// showDiscover opens the dialog and returns its panel.
func (u *UI) showDiscover() *discoverView {
	v := newDiscoverView(u)
	d := dialog.NewCustom("Discover models on Hugging Face", "Close", v, u.win)
	v.started = func() {
		d.Hide()
		if u.tabs != nil && u.tabModels != nil {
			u.tabs.Select(u.tabModels) // where the download's progress shows
		}
	}
	u.showDialog(d)
	d.SetOnClosed(func() { // after showDialog, which set its own: keep what it does
		u.forgetDialog(d)
		v.close()
	})
	size := u.win.Canvas().Size()
	d.Resize(fyne.NewSize(min(size.Width-40, 1000), min(size.Height-40, 700)))
	u.win.Canvas().Focus(v.query)
	return v
}

// newDiscoverView builds the panel on the Hub that HF_ENDPOINT and HF_TOKEN name.
func newDiscoverView(u *UI) *discoverView {
	v := &discoverView{u: u, hub: models.NewHubFromEnv(), dir: u.modelsFolder(), start: u.startModelDownloads,
		started: func() {}, selected: -1}
	v.ctx, v.stop = context.WithCancel(u.ctx)
	v.ExtendBaseWidget(v)

	v.query = newKeyEntry(v.search, u.closeTopDialog) // Enter searches, Escape closes
	v.query.SetPlaceHolder("Search GGUF models: qwen, llama 3.2, phi, gemma…")
	v.searchBtn = widget.NewButtonWithIcon("Search", theme.SearchIcon(), v.search)
	source := widget.NewLabel(v.sourceText())
	source.Importance = widget.LowImportance
	source.Wrapping = fyne.TextWrapWord
	v.status = widget.NewLabel("")
	v.status.Wrapping = fyne.TextWrapWord
	v.status.Hide()

	v.resultList = widget.NewList(func() int { return len(v.results) }, newResultRow, v.updateResultRow)
	v.resultList.OnSelected = func(id widget.ListItemID) {
		if id < len(v.results) {
			v.openRepo(v.results[id].ID, "", v.results[id].Gated != "")
		}
	}
	v.resultList.Hide()
	v.recommended = v.recommendedList()
	left := container.NewBorder(nil, nil, nil, nil, container.NewStack(v.recommended, v.resultList))

	v.repoTitle = widget.NewLabelWithStyle("Pick a repository to see its files", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.repoTitle.Truncation = fyne.TextTruncateEllipsis
	// The rule (models.RoughMemory) is in docs/chat-models.md; a line is all the room.
	rough := widget.NewLabel("RAM: a rough guess from the file size; the Models table shows the real estimate.")
	rough.Importance = widget.LowImportance
	rough.Wrapping = fyne.TextWrapWord
	v.fileList = widget.NewList(func() int { return len(v.files) }, newFileRow, v.updateFileRow)
	v.fileList.OnSelected = func(id widget.ListItemID) { v.selected = id; v.showSelection() }
	v.fileList.OnUnselected = func(widget.ListItemID) { v.selected = -1; v.showSelection() }
	v.download = widget.NewButtonWithIcon("Download", theme.DownloadIcon(), v.downloadSelected)
	v.download.Importance = widget.HighImportance
	v.download.Disable()
	right := container.NewBorder(v.repoTitle, container.NewVBox(rough, v.download), nil, nil, v.fileList)

	split := container.NewHSplit(left, right)
	split.Offset = 0.45
	top := container.NewVBox(container.NewBorder(nil, nil, nil, v.searchBtn, v.query), source)
	v.content = container.NewBorder(top, v.status, nil, nil, split)
	return v
}

// CreateRenderer draws the panel.
func (v *discoverView) CreateRenderer() fyne.WidgetRenderer {
	return widget.NewSimpleRenderer(v.content)
}

// MinSize asks for little, so the dialog fits an 800×500 window.
func (v *discoverView) MinSize() fyne.Size {
	return fyne.NewSize(min(v.content.MinSize().Width, 560), min(v.content.MinSize().Height, 320))
}

// close ends the panel's Hub calls (the dialog closed).
func (v *discoverView) close() { v.stop() }

// sourceText says where the search goes and whether a token is sent.
func (v *discoverView) sourceText() string {
	where := "huggingface.co"
	if v.hub.Endpoint != models.DefaultHubEndpoint {
		host := v.hub.Endpoint
		if u, err := url.Parse(v.hub.Endpoint); err == nil && u.Host != "" {
			host = u.Host
		}
		where = host + " (HF_ENDPOINT)"
	}
	token := "no HF_TOKEN: gated models need one"
	if v.hub.Token != "" {
		token = "HF_TOKEN set: gated models you have access to can be downloaded"
	}
	return "Searching " + where + " · " + token + "."
}

// say shows what is happening (or nothing, for "").
func (v *discoverView) say(text string, imp widget.Importance) {
	v.status.Importance = imp
	v.status.SetText(text)
	setVisible(v.status, text != "")
}

// fail shows an error; its text names the fix (HF_TOKEN, the connection, HF_ENDPOINT).
func (v *discoverView) fail(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	if v.u.core != nil {
		v.u.core.Logger().Warn("discover", "err", err)
	}
	v.say(sentence(err.Error()), widget.DangerImportance)
}

// discoverCall runs f off the UI thread as the panel's newest Hub call; done gets its
// result on the UI thread unless a newer call superseded it or the dialog closed.
func discoverCall[T any](v *discoverView, what string, f func(ctx context.Context) (T, error), done func(T, error)) {
	if v.cancel != nil {
		v.cancel()
	}
	ctx, cancel := context.WithCancel(v.ctx)
	v.cancel = cancel
	v.calls++
	id := v.calls
	v.say(what, widget.LowImportance)
	v.u.goBackground(func(context.Context) {
		defer cancel()
		res, err := f(ctx)
		v.u.do(func() {
			if id != v.calls || v.ctx.Err() != nil {
				return
			}
			v.say("", widget.MediumImportance)
			done(res, err)
		})
	})
}

// search lists the repositories matching the query; an empty query shows the
// suggestions again.
func (v *discoverView) search() {
	q := strings.TrimSpace(v.query.Text)
	if q == "" {
		v.showResults(nil)
		return
	}
	discoverCall(v, "Searching for “"+q+"”…", func(ctx context.Context) ([]models.HubModel, error) {
		return v.hub.Search(ctx, q, searchLimit)
	}, func(res []models.HubModel, err error) {
		if err != nil {
			v.fail(err)
			return
		}
		v.showResults(res)
		if len(res) == 0 {
			v.say("No GGUF repositories match “"+q+"”: try fewer words, or a model family (qwen, llama, phi).", widget.MediumImportance)
		}
	})
}

// showResults lists repositories; nil shows the suggestions.
func (v *discoverView) showResults(res []models.HubModel) {
	v.results = res
	v.resultList.UnselectAll()
	v.resultList.Refresh()
	v.resultList.ScrollToTop()
	setVisible(v.resultList, res != nil)
	setVisible(v.recommended, res == nil)
}

// openRepo lists repo's GGUF files; pick (a file name, or "") is selected when listed.
// A gated repository without HF_TOKEN is flagged at once, before a download is tried.
func (v *discoverView) openRepo(repo, pick string, gated bool) {
	v.repo = repo
	v.repoTitle.SetText(repo)
	v.setFiles(nil, "")
	discoverCall(v, "Listing the files of "+repo+"…", func(ctx context.Context) ([]discoverFile, error) {
		return v.listFiles(ctx, repo)
	}, func(files []discoverFile, err error) {
		if err != nil {
			v.fail(err)
			return
		}
		v.setFiles(files, pick)
		switch {
		case len(files) == 0:
			v.say(repo+" has no .gguf files on its main branch: pick another repository.", widget.MediumImportance)
		case gated && v.hub.Token == "":
			v.say(repo+" is gated: accept its licence on its Hugging Face page, then set HF_TOKEN to an access token "+
				"of that account and start Beekeeper again.", widget.WarningImportance)
		}
	})
}

// listFiles asks the Hub for repo's files and marks those in the models folder (off
// the UI thread: it reads the disk).
func (v *discoverView) listFiles(ctx context.Context, repo string) ([]discoverFile, error) {
	fs, err := v.hub.Files(ctx, repo)
	if err != nil {
		return nil, err
	}
	out := make([]discoverFile, len(fs))
	for i, f := range fs {
		_, err := os.Stat(filepath.Join(v.dir, f.Name()))
		out[i] = discoverFile{f: f, have: err == nil}
	}
	return out, nil
}

// setFiles lists files and selects pick, else the usual choice: Q4_K_M, else the
// smallest model that is not a projector.
func (v *discoverView) setFiles(files []discoverFile, pick string) {
	v.files = files
	v.selected = -1
	v.fileList.UnselectAll()
	v.fileList.Refresh()
	choice := -1
	for i, df := range files {
		switch {
		case pick != "" && strings.EqualFold(df.f.Name(), pick):
			choice = i
		case pick == "" && df.f.Quant == "Q4_K_M" && (choice < 0 || files[choice].f.Quant != "Q4_K_M"):
			choice = i
		case pick == "" && choice < 0 && !df.f.Projector:
			choice = i
		}
	}
	if choice >= 0 {
		v.fileList.Select(choice) // OnSelected shows it
		v.fileList.ScrollTo(choice)
	}
	v.showSelection()
}

// showSelection puts the chosen file on the Download button.
func (v *discoverView) showSelection() {
	if v.selected < 0 || v.selected >= len(v.files) {
		v.download.SetText("Download")
		v.download.Disable()
		return
	}
	df := v.files[v.selected]
	if df.have {
		v.download.SetText("Already in your models folder")
		v.download.Disable()
		return
	}
	v.download.SetText("Download " + fileLabel(df.f) + " (" + models.FormatBytes(uint64(df.f.Size)) + ")")
	v.download.Enable()
}

// downloadSelected downloads the chosen file.
func (v *discoverView) downloadSelected() {
	if v.selected < 0 || v.selected >= len(v.files) || v.files[v.selected].have {
		return
	}
	v.fetch(v.repo, v.files[v.selected].f)
}

// fetch asks the Hub whether the file may be downloaded (a gated repository is
// explained here, with HF_TOKEN), then hands it to the Models screen's downloader with
// the size and sha256 the Hub lists, so what arrives is checked.
func (v *discoverView) fetch(repo string, f models.HubFile) {
	discoverCall(v, "Checking access to "+f.Name()+"…", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, v.hub.CheckAccess(ctx, repo, f)
	}, func(_ struct{}, err error) {
		if err != nil {
			v.fail(err)
			return
		}
		if err := v.start(v.hub.Requests(repo, f)); err != nil {
			v.fail(err)
			return
		}
		v.started()
	})
}

// downloadRecommended fetches a suggestion: its file as the Hub lists it now (exact size
// and sha256), or, when the repository no longer has that file, its file list to pick from.
func (v *discoverView) downloadRecommended(r models.Recommended) {
	discoverCall(v, "Looking up "+r.File+"…", func(ctx context.Context) ([]discoverFile, error) {
		return v.listFiles(ctx, r.Repo)
	}, func(files []discoverFile, err error) {
		if err != nil {
			v.fail(err)
			return
		}
		for _, df := range files {
			if strings.EqualFold(df.f.Name(), r.File) {
				if df.have {
					v.say(r.File+" is already in your models folder: spawn it from the Models screen.", widget.MediumImportance)
					return
				}
				v.fetch(r.Repo, df.f)
				return
			}
		}
		v.repo = r.Repo
		v.repoTitle.SetText(r.Repo)
		v.setFiles(files, "")
		v.say(r.Repo+" no longer has "+r.File+": pick one of its files on the right.", widget.WarningImportance)
	})
}

// recommendedList is the empty state: what to try first, one click each.
func (v *discoverView) recommendedList() fyne.CanvasObject {
	head := widget.NewLabelWithStyle("Suggestions to start with", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	hint := widget.NewLabel("Small models that run on most computers (suggestions, not endorsements: " +
		"check each licence). Or search above for any GGUF model.")
	hint.Wrapping = fyne.TextWrapWord
	hint.Importance = widget.LowImportance
	rows := container.NewVBox(head, hint)
	for _, r := range models.RecommendedModels {
		title := widget.NewLabelWithStyle(r.Title, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		title.Truncation = fyne.TextTruncateEllipsis
		facts := widget.NewLabel("about " + models.FormatBytes(uint64(r.Size)) + " · " + r.License + " · " + r.Note)
		facts.Wrapping = fyne.TextWrapWord
		facts.Importance = widget.LowImportance
		get := widget.NewButtonWithIcon("Download", theme.DownloadIcon(), func() { v.downloadRecommended(r) })
		more := widget.NewButton("Other sizes", func() { v.openRepo(r.Repo, r.File, false) })
		v.recButtons = append(v.recButtons, get)
		rows.Add(widget.NewSeparator())
		rows.Add(container.NewVBox(title, facts, container.NewHBox(get, more)))
	}
	return container.NewVScroll(rows)
}

// resultRow is one repository: its id, figures and licence, and a badge when gated.
type resultRow struct {
	widget.BaseWidget
	name, facts, gated *widget.Label
	content            fyne.CanvasObject
}

func (r *resultRow) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(r.content) }

func newResultRow() fyne.CanvasObject {
	r := &resultRow{name: widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		facts: widget.NewLabel(""), gated: widget.NewLabel("gated")}
	r.name.Truncation = fyne.TextTruncateEllipsis
	r.facts.Truncation = fyne.TextTruncateEllipsis
	r.facts.Importance = widget.LowImportance
	r.gated.Importance = widget.WarningImportance
	r.gated.TextStyle.Bold = true
	r.content = container.NewBorder(nil, nil, nil, r.gated, container.NewVBox(r.name, r.facts))
	r.ExtendBaseWidget(r)
	return r
}

func (v *discoverView) updateResultRow(i widget.ListItemID, o fyne.CanvasObject) {
	r, ok := o.(*resultRow)
	if !ok || i >= len(v.results) {
		return
	}
	m := v.results[i]
	r.name.SetText(m.ID)
	facts := shortCount(m.Downloads) + " downloads · " + shortCount(m.Likes) + " likes"
	if l := m.License(); l != "" {
		facts += " · " + l
	}
	r.facts.SetText(facts)
	setVisible(r.gated, m.Gated != "")
}

// fileRow is one file: quantization, size and rough RAM, then its name.
type fileRow struct {
	widget.BaseWidget
	title, name *widget.Label
	content     fyne.CanvasObject
}

func (r *fileRow) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(r.content) }

func newFileRow() fyne.CanvasObject {
	r := &fileRow{title: widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), name: widget.NewLabel("")}
	r.title.Truncation = fyne.TextTruncateEllipsis
	r.name.Truncation = fyne.TextTruncateEllipsis
	r.name.Importance = widget.LowImportance
	r.content = container.NewVBox(r.title, r.name)
	r.ExtendBaseWidget(r)
	return r
}

func (v *discoverView) updateFileRow(i widget.ListItemID, o fyne.CanvasObject) {
	r, ok := o.(*fileRow)
	if !ok || i >= len(v.files) {
		return
	}
	df := v.files[i]
	r.title.SetText(fileTitle(df.f))
	name := df.f.Name()
	if df.f.Split() {
		name += " + " + strconv.Itoa(len(df.f.Parts)-1) + " more parts"
	}
	if df.have {
		name += " · downloaded"
	}
	r.name.SetText(name)
}

// fileLabel names a file by its quantization, else its name.
func fileLabel(f models.HubFile) string {
	if f.Quant != "" {
		return f.Quant
	}
	return f.Name()
}

// fileTitle is "Q4_K_M · 469 MiB · RAM about 0.8 GiB (rough)"; plain ASCII words, since "≈" is not in the bundled font and would load a system font.
func fileTitle(f models.HubFile) string {
	s := fileLabel(f) + " · " + models.FormatBytes(uint64(f.Size))
	if f.Projector {
		return s + " · vision projector (used beside a model)"
	}
	return s + " · RAM about " + models.FormatBytes(models.RoughMemory(f.Size))
}

// shortCount is 1234567 as "1.2M".
func shortCount(n int64) string {
	switch {
	case n >= 1_000_000:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 1_000:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + "K"
	}
	return strconv.FormatInt(n, 10)
}

// sentence ends s with a full stop.
func sentence(s string) string {
	if s != "" && !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// startModelDownloads starts downloads on the Models screen, whose rows show them.
func (u *UI) startModelDownloads(reqs []models.Request) error {
	v := u.modelsScreen()
	if v == nil {
		return fmt.Errorf("the models folder %s cannot be used, so nothing can be downloaded: choose another one in Settings", u.modelsFolder())
	}
	for _, r := range reqs {
		if err := v.begin(r); err != nil {
			return fmt.Errorf("download %s: %w", r.Name, err)
		}
	}
	return nil
}

// modelsScreen is the Models screen, shown or not yet; nil when it could not be built.
func (u *UI) modelsScreen() *modelsView {
	if u.tabModels == nil {
		return nil
	}
	if v, ok := u.tabModels.Content.(*modelsView); ok {
		return v
	}
	v, _ := u.detached[u.tabModels].(*modelsView)
	return v
}
