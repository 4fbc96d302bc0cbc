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

	"fyne.io/fyne/v2/test"

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
