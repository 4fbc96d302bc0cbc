package ui

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/models"
)

// modelsFixture is a Models screen in a test window on a fresh library.
type modelsFixture struct {
	su  *screenUI
	lib *models.Library
	v   *modelsView
}

func newModelsFixture(t *testing.T, hc *http.Client, setup func(lib *models.Library)) *modelsFixture {
	t.Helper()
	su := newScreenUI(t)
	dir := t.TempDir()
	lib, err := models.OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(lib)
	}
	f := &modelsFixture{su: su, lib: lib}
	f.open(t, hc)
	return f
}

// open builds the screen (again: an app restart) on the fixture's library.
func (f *modelsFixture) open(t *testing.T, hc *http.Client) {
	t.Helper()
	f.su.onUI(func() {
		dl := models.NewDownloader(f.lib.Dir(), hc)
		dl.StallTimeout = time.Second
		f.v = newModelsView(f.su.UI, f.lib, dl, nil)
		f.v.restorePending()
		f.su.win.SetContent(f.v)
	})
	f.su.waitUntil(t, "the first listing", 5*time.Second, func() bool { return f.v.loaded })
}

// download types url into the URL box and presses Download.
func (f *modelsFixture) download(url string) {
	f.su.onUI(func() {
		f.v.url.SetText(url)
		test.Tap(f.v.url)
		f.v.startDownload()
	})
}

// buttons are the row's visible buttons, by label.
func (r *downloadRow) buttons() string {
	var on []string
	for _, b := range []struct {
		name string
		on   bool
	}{{"Pause", r.pause.Visible()}, {"Resume", r.resume.Visible()}, {"Retry", r.retry.Visible()},
		{"Cancel", r.cancel.Visible()}, {"Spawn", r.spawn.Visible()}, {"Dismiss", r.dismiss.Visible()}} {
		if b.on {
			on = append(on, b.name)
		}
	}
	return strings.Join(on, ",")
}

func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestModelsScreenListsAndDownloads(t *testing.T) {
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "stories260K.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	f := newModelsFixture(t, srv.Client(), func(lib *models.Library) {
		if err := os.WriteFile(filepath.Join(lib.Dir(), "broken.gguf"), []byte("nope"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	v := f.v
	f.su.waitUntil(t, "the unreadable file listed with its reason", 5*time.Second, func() bool {
		return len(v.infos) == 1 && v.infos[0].Err != nil
	})

	f.download(srv.URL + "/models/stories260K.gguf?download=true")
	f.su.waitUntil(t, "the download done and listed with metadata", 10*time.Second, func() bool {
		r := v.rows["stories260K.gguf"]
		if r == nil || !strings.Contains(r.figures.Text, "done") || len(v.infos) != 2 {
			return false
		}
		cells := modelCells(v.infos[1])
		return cells[0] == "stories260K" && cells[1] == "llama" && cells[4] == "2048"
	})
	f.su.onUI(func() {
		r := v.rows["stories260K.gguf"]
		if got := r.buttons(); got != "Spawn,Dismiss" || !r.bar.Visible() || r.bar.Value != 1 {
			t.Errorf("a finished download shows %q, bar %v at %v; want Spawn,Dismiss and a full bar", got, r.bar.Visible(), r.bar.Value)
		}
		if v.url.Text != "" {
			t.Errorf("the URL box still says %q after the model arrived", v.url.Text)
		}
	})
	got, err := os.ReadFile(filepath.Join(f.lib.Dir(), "stories260K.gguf"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded model differs (err %v)", err)
	}
}

// Issue 13 item 4: a file that is not a GGUF model ends as a failure that says why,
// with Retry and Dismiss; not a full bar with Cancel and a close button.
func TestModelsDownloadOfAWebPageFailsWithRetry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>Sign in to continue</title>"))
	}))
	defer srv.Close()
	f := newModelsFixture(t, srv.Client(), nil)
	url := srv.URL + "/org/repo/blob/main/model.gguf"
	f.download(url)
	f.su.waitUntil(t, "the download failed", 10*time.Second, func() bool {
		r := f.v.rows["model.gguf"]
		return r != nil && r.d.Progress().State == models.Failed
	})
	f.su.onUI(func() {
		r := f.v.rows["model.gguf"]
		if got := r.buttons(); got != "Retry,Dismiss" {
			t.Errorf("buttons %q, want Retry,Dismiss", got)
		}
		if r.bar.Visible() || r.busy.Visible() {
			t.Error("a failed download still shows a progress bar")
		}
		if !r.headline.Visible() || !strings.Contains(r.headline.Text, "failed") {
			t.Errorf("headline %q (shown %v), want it to say the download failed", r.headline.Text, r.headline.Visible())
		}
		if !strings.Contains(r.figures.Text, "not a GGUF model") || !strings.Contains(r.figures.Text, "Retry") {
			t.Errorf("the row says %q, want why and what to do", r.figures.Text)
		}
		if f.v.url.Text != url {
			t.Errorf("the URL box says %q, want the URL kept (%q)", f.v.url.Text, url)
		}
	})
	if got := filesIn(t, f.lib.Dir()); len(got) != 0 {
		t.Fatalf("a failed download left %q", got)
	}
}

// Issue 13 item 4: a 404 keeps the URL to fix, offers Retry (not Resume), leaves no
// file, and after a restart does not come back as a paused download. Retry works
// once the server has the file.
func TestModelsDownload404KeepsURLAndOffersRetry(t *testing.T) {
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	var there atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !there.Load() {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	f := newModelsFixture(t, srv.Client(), nil)
	url := srv.URL + "/org/repo/resolve/main/modle.gguf"
	f.download(url)
	f.su.waitUntil(t, "the 404", 10*time.Second, func() bool {
		r := f.v.rows["modle.gguf"]
		return r != nil && r.d.Progress().State == models.Failed
	})
	f.su.onUI(func() {
		r := f.v.rows["modle.gguf"]
		if got := r.buttons(); got != "Retry,Dismiss" {
			t.Errorf("buttons after a 404: %q, want Retry,Dismiss", got)
		}
		if !strings.Contains(r.figures.Text, "404") || !strings.Contains(r.figures.Text, "check the URL") {
			t.Errorf("the row says %q, want the 404 and what to do", r.figures.Text)
		}
		if f.v.url.Text != url {
			t.Errorf("the URL box says %q, want the URL kept to fix", f.v.url.Text)
		}
	})
	if got := filesIn(t, f.lib.Dir()); len(got) != 0 {
		t.Fatalf("a 404 left %q", got)
	}

	f.open(t, srv.Client()) // the app restarts
	f.su.onUI(func() {
		if len(f.v.rows) != 0 {
			t.Errorf("after a restart %d download rows came back, want none", len(f.v.rows))
		}
	})

	// The user goes back to the first screen (the row is gone) and retries.
	f.download(url)
	f.su.waitUntil(t, "the second 404", 10*time.Second, func() bool {
		r := f.v.rows["modle.gguf"]
		return r != nil && r.d.Progress().State == models.Failed
	})
	there.Store(true)
	f.su.onUI(func() { test.Tap(f.v.rows["modle.gguf"].retry) })
	f.su.waitUntil(t, "the retry done", 10*time.Second, func() bool {
		r := f.v.rows["modle.gguf"]
		return r != nil && r.d.Progress().State == models.Done && len(f.v.infos) == 1
	})
}

// A server that stops sending: the row says so and offers Resume (the bytes are
// kept), which finishes the model.
func TestModelsDownloadStallOffersResume(t *testing.T) {
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	var stall atomic.Bool
	stall.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	f := newModelsFixture(t, srv.Client(), nil)
	f.download(srv.URL + "/m.gguf")
	f.su.waitUntil(t, "the stall noticed", 10*time.Second, func() bool {
		r := f.v.rows["m.gguf"]
		return r != nil && r.d.Progress().State == models.Failed
	})
	f.su.onUI(func() {
		r := f.v.rows["m.gguf"]
		if got := r.buttons(); got != "Resume,Cancel" {
			t.Errorf("buttons after a stall: %q, want Resume,Cancel", got)
		}
		if !r.bar.Visible() || r.bar.Value < 0.49 || r.bar.Value > 0.51 {
			t.Errorf("bar shown %v at %v, want the half kept", r.bar.Visible(), r.bar.Value)
		}
		if !strings.Contains(r.figures.Text, "no data from the server") {
			t.Errorf("the row says %q, want the stall named", r.figures.Text)
		}
	})
	stall.Store(false)
	f.su.onUI(func() { test.Tap(f.v.rows["m.gguf"].resume) })
	f.su.waitUntil(t, "the resumed download done", 10*time.Second, func() bool {
		r := f.v.rows["m.gguf"]
		return r.d.Progress().State == models.Done && len(f.v.infos) == 1
	})
}

// Issue 13 item 6: an empty library says what to do; a file copied into the models
// folder shows up by itself (no Refresh), and goes when it is removed.
func TestModelsScreenEmptyStateThenCopiedFileAppears(t *testing.T) {
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	f := newModelsFixture(t, nil, nil)
	f.su.onUI(func() {
		if !f.v.empty.Visible() || f.v.list.Visible() || f.v.headerRow.Visible() {
			t.Fatal("an empty library shows the table, not the empty state")
		}
	})
	if text := strings.Join(modelsLabelTexts(f.v.empty), " "); !strings.Contains(text, "Download") ||
		!strings.Contains(text, "Browse") || !strings.Contains(text, "copy .gguf files into the models folder") {
		t.Fatalf("the empty state says %q, want the ways to get a model", text)
	}
	// A copy arrives in pieces, as cp writes it.
	dst, err := os.Create(filepath.Join(f.lib.Dir(), "copied.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for b := data; len(b) > 0; b = b[min(len(b), 64<<10):] {
		dst.Write(b[:min(len(b), 64<<10)])
	}
	dst.Close()
	f.su.waitUntil(t, "the copied file listed without Refresh", 10*time.Second, func() bool {
		return len(f.v.infos) == 1 && f.v.infos[0].Err == nil && f.v.list.Visible() && !f.v.empty.Visible()
	})
	if err := os.Remove(filepath.Join(f.lib.Dir(), "copied.gguf")); err != nil {
		t.Fatal(err)
	}
	f.su.waitUntil(t, "the removed file gone and the empty state back", 10*time.Second, func() bool {
		return len(f.v.infos) == 0 && f.v.empty.Visible()
	})
}

// Issue 13 item 6: a file picked with Browse… (or a path typed into the URL box) joins
// the library and the recent models the spawn dialog offers.
func TestModelsBrowseAddsToLibraryAndRecentModels(t *testing.T) {
	f := newModelsFixture(t, nil, nil)
	var remembered []string
	f.su.onUI(func() {
		f.v.remember = func(p string) { remembered = append(remembered, p) }
		f.v.addFile(testenv.Model(t)) // what the file dialog's callback does
	})
	f.su.waitUntil(t, "the picked file listed", 5*time.Second, func() bool {
		return len(f.v.infos) == 1 && f.v.infos[0].Path == testenv.Model(t)
	})
	synth := filepath.Join(t.TempDir(), "typed.gguf")
	data, _ := os.ReadFile(testenv.Model(t))
	if err := os.WriteFile(synth, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f.download(synth) // a path typed into the URL box
	f.su.waitUntil(t, "the typed path listed", 5*time.Second, func() bool { return len(f.v.infos) == 2 })
	f.su.onUI(func() {
		if len(remembered) != 2 || remembered[0] != testenv.Model(t) || remembered[1] != synth {
			t.Errorf("recent models got %q", remembered)
		}
		if f.v.url.Text != "" || len(f.v.rows) != 0 {
			t.Errorf("a typed path started a download (%d rows) or stayed in the box (%q)", len(f.v.rows), f.v.url.Text)
		}
	})
	// The library keeps them: a new screen (an app restart) lists both.
	lib2, err := models.OpenLibrary(f.lib.Dir(), filepath.Join(filepath.Dir(f.lib.Dir()), "models.json"))
	if err != nil || len(lib2.List()) != 2 {
		t.Fatalf("reopened library: %v, %v", lib2, err)
	}
}

// The spawn dialog's Browse… hands its pick to addModelFile: the Models screen's
// library lists it when the screen is shown again (Show reads the folder and list anew).
func TestAddModelFileJoinsTheModelsScreen(t *testing.T) {
	su := newScreenUI(t) // BEEKEEPER_HOME is a fresh folder
	lib, err := su.openModelLibrary()
	if err != nil {
		t.Fatal(err)
	}
	var v *modelsView
	su.onUI(func() {
		v = newModelsView(su.UI, lib, models.NewDownloader(lib.Dir(), nil), nil)
		su.win.SetContent(v)
	})
	su.waitUntil(t, "the empty library listed", 5*time.Second, func() bool { return v.loaded && len(v.infos) == 0 })
	su.onUI(func() { v.Hide() }) // another tab is shown
	if err := su.addModelFile(testenv.Model(t)); err != nil {
		t.Fatal(err)
	}
	su.onUI(func() { v.Show() }) // the Models tab again
	su.waitUntil(t, "the picked file listed", 5*time.Second, func() bool {
		return len(v.infos) == 1 && v.infos[0].Path == testenv.Model(t)
	})
}

// The memory column fills in off the UI thread: "…" first, then the figures.
func TestModelsScreenShowsEstimates(t *testing.T) {
	f := newModelsFixture(t, nil, func(lib *models.Library) {
		if err := lib.Add(testenv.Model(t)); err != nil {
			t.Fatal(err)
		}
	})
	var cell memoryCell
	f.su.waitUntil(t, "the estimate shown", 10*time.Second, func() bool {
		if len(f.v.infos) != 1 {
			return false
		}
		cell = f.v.estimateCell(f.v.infos[0])
		return cell.text != "…"
	})
	// stories260K at its 2048-token training context (under the worker's 4096 cap).
	if !strings.HasSuffix(cell.text, " MiB") || !strings.Contains(cell.text, " MiB / ") || strings.Contains(cell.text, "@") {
		t.Fatalf("estimate cell %q", cell.text)
	}
	if !strings.Contains(cell.tip, "context of 2048 tokens") || strings.Contains(cell.tip, "trained for") {
		t.Fatalf("estimate tooltip %q", cell.tip)
	}
	t.Logf("estimate cell: %s (%s)", cell.text, cell.tip)
}

// The cell is short; the tooltip names the context when the worker's default is not
// the training one.
func TestEstimateSummaryNamesACappedContext(t *testing.T) {
	e := models.Estimate{CtxSize: models.DefaultCtxSize, CPUOnlyRAM: 5 << 30, FullOffloadVRAM: 6 << 30}
	cell, tip := estimateSummary(models.Info{ContextLength: 131072}, e, nil)
	if cell != "5 GiB / 6 GiB" || !strings.Contains(tip, "context of 4096 tokens") || !strings.Contains(tip, "trained for 131072") {
		t.Errorf("a 128K model: %q, %q", cell, tip)
	}
	if cell, tip := estimateSummary(models.Info{ContextLength: 4096}, e, nil); cell != "5 GiB / 6 GiB" || strings.Contains(tip, "trained for") {
		t.Errorf("a 4K model: %q, %q", cell, tip)
	}
	if cell, tip := estimateSummary(models.Info{}, e, models.ErrNotGGUF); cell != "?" || !strings.Contains(tip, "not a GGUF") {
		t.Errorf("an error: %q, %q", cell, tip)
	}
}
