package ui

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/models"
)

func TestModelsScreenListsAndDownloads(t *testing.T) {
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "stories260K.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()

	su := newScreenUI(t)
	dir := t.TempDir()
	lib, err := models.OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lib.Dir(), "broken.gguf"), []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	inUse := func(p string) bool { return strings.HasSuffix(p, "broken.gguf") }
	var v *modelsView
	su.onUI(func() {
		v = newModelsView(su.UI, lib, models.NewDownloader(lib.Dir(), srv.Client()), inUse)
		su.win.SetContent(v)
	})
	su.waitUntil(t, "the unreadable file listed with its reason", 5*time.Second, func() bool {
		return len(v.infos) == 1 && v.infos[0].Err != nil
	})

	su.onUI(func() {
		test.Type(v.url, srv.URL+"/models/stories260K.gguf?download=true")
		test.Tap(v.url) // focus away from nothing: the entry keeps its text
		v.startDownload()
	})
	su.waitUntil(t, "the download done and listed with metadata", 10*time.Second, func() bool {
		r := v.rows["stories260K.gguf"]
		if r == nil || !strings.HasPrefix(r.figures.Text, "done") || len(v.infos) != 2 {
			return false
		}
		cells := modelCells(v.infos[1])
		return cells[0] == "stories260K" && cells[1] == "llama" && cells[4] == "2048"
	})
	got, err := os.ReadFile(filepath.Join(lib.Dir(), "stories260K.gguf"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded model differs (err %v)", err)
	}
}

// The estimate column fills in off the UI thread: "…" first, then the figures.
func TestModelsScreenShowsEstimates(t *testing.T) {
	su := newScreenUI(t)
	dir := t.TempDir()
	lib, err := models.OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := lib.Add(testenv.Model(t)); err != nil {
		t.Fatal(err)
	}
	var v *modelsView
	su.onUI(func() {
		v = newModelsView(su.UI, lib, models.NewDownloader(lib.Dir(), nil), nil)
		su.win.SetContent(v)
	})
	var cell string
	su.waitUntil(t, "the estimate shown", 10*time.Second, func() bool {
		if len(v.infos) != 1 {
			return false
		}
		cell = v.estimateCell(v.infos[0])
		return cell != "…"
	})
	// stories260K at its 2048-token training context (under the worker's 4096 cap), which
	// the Context column shows already.
	if !strings.HasSuffix(cell, " MiB") || !strings.Contains(cell, " MiB / ") || strings.Contains(cell, "@") {
		t.Fatalf("estimate cell %q", cell)
	}
	t.Logf("estimate cell: %s", cell)
}

// At 800 px the headers share the width without running into each other.
func TestModelsColumnsNeverOverlap(t *testing.T) {
	test.NewTempApp(t)
	cells := make([]fyne.CanvasObject, len(modelCols))
	for i, c := range modelCols {
		l := widget.NewLabelWithStyle(c, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
		l.Truncation = fyne.TextTruncateEllipsis
		cells[i] = l
	}
	if w := modelWidths.MinSize(cells).Width; w != 0 {
		t.Fatalf("the columns ask for %v px; a narrow window must truncate them instead", w)
	}
	for _, width := range []float32{560, 1100} {
		modelWidths.Layout(cells, fyne.NewSize(width, 36))
		for i, c := range cells {
			if i > 0 && c.Position().X < cells[i-1].Position().X+cells[i-1].Size().Width {
				t.Errorf("at %v px, %q starts inside %q", width, modelCols[i], modelCols[i-1])
			}
		}
		if last := cells[len(cells)-1]; last.Position().X+last.Size().Width > width+0.5 {
			t.Errorf("at %v px the last column ends at %v", width, last.Position().X+last.Size().Width)
		}
	}
}

// The cell names the context only when the worker's default is not the training one.
func TestEstimateSummaryNamesACappedContext(t *testing.T) {
	e := models.Estimate{CtxSize: models.DefaultCtxSize, CPUOnlyRAM: 5 << 30, FullOffloadVRAM: 6 << 30}
	if got := estimateSummary(models.Info{ContextLength: 131072}, e, nil); got != "5 GiB / 6 GiB @ 4096" {
		t.Errorf("a 128K model: %q", got)
	}
	if got := estimateSummary(models.Info{ContextLength: 4096}, e, nil); got != "5 GiB / 6 GiB" {
		t.Errorf("a 4K model: %q", got)
	}
	if got := estimateSummary(models.Info{}, e, models.ErrNotGGUF); got != "?" {
		t.Errorf("an error: %q", got)
	}
}
