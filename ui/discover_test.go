package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/models/hubtest"
)

// discoverFixture is the whole app with HF_ENDPOINT on a fake Hub on loopback, so
// nothing reaches the real one.
type discoverFixture struct {
	tu   *testUI
	fake *hubtest.Server
}

func newDiscoverFixture(t *testing.T, token string, repos ...hubtest.Repo) *discoverFixture {
	t.Helper()
	fake := hubtest.New(repos...)
	t.Cleanup(fake.Close)
	t.Setenv("HF_ENDPOINT", fake.URL())
	t.Setenv("HF_TOKEN", token)
	return &discoverFixture{tu: newTestUI(t), fake: fake}
}

// open shows the Discover dialog.
func (f *discoverFixture) open() *discoverView {
	var v *discoverView
	f.tu.onUI(func() { v = f.tu.showDiscover() })
	return v
}

// search types q and presses Search, then waits for the answer.
func (f *discoverFixture) search(t *testing.T, v *discoverView, q string) {
	t.Helper()
	f.tu.onUI(func() {
		test.Type(v.query, q)
		test.Tap(v.searchBtn)
	})
	f.tu.waitFor(t, "search results", 10*time.Second, func() bool {
		return v.resultList.Visible() || v.status.Importance == widget.DangerImportance
	})
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func storiesRepo(t *testing.T, id, gated string) hubtest.Repo {
	t.Helper()
	model, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	return hubtest.Repo{ID: id, Downloads: 1234, Likes: 56, Tags: []string{"license:mit"}, Gated: gated, Files: []hubtest.File{
		{Path: "README.md", Content: []byte("# stories")},
		{Path: "stories260K-F32.gguf", Content: model},
		{Path: "stories260K-Q4_K_M.gguf", Content: model},
		{Path: "stories260K-Q8_0.gguf", Content: append(model, 0)}, // larger: listed after Q4_K_M
	}}
}

// TestDiscoverSearchPickDownloadCompletes: search the Hub, pick a repository, its
// Q4_K_M file is chosen, Download hands it to the Models screen's downloader with the
// Hub's sha256, and the model lands in the models folder, verified.
func TestDiscoverSearchPickDownloadCompletes(t *testing.T) {
	f := newDiscoverFixture(t, "", storiesRepo(t, "karpathy/stories-GGUF", ""),
		hubtest.Repo{ID: "someone/other-GGUF", Downloads: 5})
	v := f.open()
	f.tu.onUI(func() {
		if !v.recommended.Visible() || v.resultList.Visible() || len(v.recButtons) != len(models.RecommendedModels) {
			t.Fatal("before a search Discover should show the suggestions")
		}
		if !strings.Contains(v.sourceText(), "(HF_ENDPOINT)") || !strings.Contains(v.sourceText(), "no HF_TOKEN") {
			t.Fatalf("source line = %q", v.sourceText())
		}
	})
	f.search(t, v, "stories")
	f.tu.onUI(func() {
		if len(v.results) != 1 || v.results[0].ID != "karpathy/stories-GGUF" || v.recommended.Visible() {
			t.Fatalf("results = %+v", v.results)
		}
		row := newResultRow().(*resultRow)
		v.updateResultRow(0, row)
		if row.name.Text != "karpathy/stories-GGUF" || row.facts.Text != "1.2K downloads · 56 likes · mit" || row.gated.Visible() {
			t.Fatalf("result row = %q / %q, gated badge %v", row.name.Text, row.facts.Text, row.gated.Visible())
		}
		v.resultList.Select(0)
	})
	f.tu.waitFor(t, "the repository's files", 10*time.Second, func() bool { return len(v.files) == 3 })
	f.tu.onUI(func() {
		if v.selected != 1 || v.files[1].f.Quant != "Q4_K_M" {
			t.Fatalf("selected file %d, want the Q4_K_M one (index 1): %+v", v.selected, v.files)
		}
		row := newFileRow().(*fileRow)
		v.updateFileRow(1, row)
		if !strings.HasPrefix(row.title.Text, "Q4_K_M · 1.1 MiB · RAM about ") || row.name.Text != "stories260K-Q4_K_M.gguf" {
			t.Fatalf("file row = %q / %q", row.title.Text, row.name.Text)
		}
		if v.download.Disabled() || v.download.Text != "Download Q4_K_M (1.1 MiB)" {
			t.Fatalf("download button %q (disabled %v)", v.download.Text, v.download.Disabled())
		}
		test.Tap(v.download)
	})
	dest := filepath.Join(f.tu.modelsFolder(), "stories260K-Q4_K_M.gguf")
	f.tu.waitFor(t, "the download to finish on the Models screen", 20*time.Second, func() bool {
		r := f.tu.modelsScreen().rows["stories260K-Q4_K_M.gguf"]
		return r != nil && r.d.Progress().State == models.Done
	})
	f.tu.onUI(func() {
		if len(f.tu.dialogs) != 0 || f.tu.tabs.Selected() != f.tu.tabModels {
			t.Fatalf("after Download: %d dialogs open, tab %q; want the dialog closed and the Models screen shown",
				len(f.tu.dialogs), f.tu.tabs.Selected().Text)
		}
		req := f.tu.modelsScreen().rows["stories260K-Q4_K_M.gguf"].d.Request()
		if req.SHA256 != testenv.ModelSHA256 || req.Size != 1185376 ||
			req.URL != f.fake.URL()+"/karpathy/stories-GGUF/resolve/main/stories260K-Q4_K_M.gguf" {
			t.Fatalf("download request = %+v; want the Hub's link, size and sha256", req)
		}
	})
	if got, err := fileSHA256(dest); err != nil || got != testenv.ModelSHA256 {
		t.Fatalf("%s: sha256 %s, %v", dest, got, err)
	}

	// Opened again, the same file is marked as already there.
	v = f.open()
	f.search(t, v, "stories")
	f.tu.onUI(func() { v.resultList.Select(0) })
	f.tu.waitFor(t, "the files again", 10*time.Second, func() bool { return len(v.files) == 3 })
	f.tu.onUI(func() {
		if !v.files[1].have || !v.download.Disabled() || v.download.Text != "Already in your models folder" {
			t.Fatalf("a downloaded file should be marked: have=%v, button %q", v.files[1].have, v.download.Text)
		}
	})
}

// TestDiscoverGatedWithoutTokenNamesHFToken: a gated file is refused before any
// download starts, with the fix (HF_TOKEN) in the panel.
func TestDiscoverGatedWithoutTokenNamesHFToken(t *testing.T) {
	f := newDiscoverFixture(t, "", storiesRepo(t, "meta/stories-gated-GGUF", "auto"))
	f.fake.Token = "hf_needed"
	v := f.open()
	f.search(t, v, "gated")
	f.tu.onUI(func() {
		row := newResultRow().(*resultRow)
		v.updateResultRow(0, row)
		if !row.gated.Visible() {
			t.Fatal("a gated repository should carry the gated badge")
		}
		v.resultList.Select(0)
	})
	f.tu.waitFor(t, "the files", 10*time.Second, func() bool { return len(v.files) == 3 })
	f.tu.onUI(func() {
		if v.status.Importance != widget.WarningImportance || !strings.Contains(v.status.Text, "HF_TOKEN") {
			t.Fatalf("a gated repository without HF_TOKEN should be flagged when opened; status %q", v.status.Text)
		}
		test.Tap(v.download)
	})
	f.tu.waitFor(t, "the check", 10*time.Second, func() bool { return v.status.Importance == widget.DangerImportance })
	f.tu.waitFor(t, "the refusal", 10*time.Second, func() bool { return strings.Contains(v.status.Text, "HF_TOKEN") })
	f.tu.onUI(func() {
		if len(f.tu.modelsScreen().rows) != 0 || len(f.tu.dialogs) != 1 {
			t.Fatalf("a refused file must not start a download (%d rows) nor close Discover", len(f.tu.modelsScreen().rows))
		}
		if !strings.Contains(v.status.Text, "gated") {
			t.Fatalf("status = %q", v.status.Text)
		}
	})
}

// TestDiscoverRecommendedOneClick: a suggestion downloads with one click, with the size
// and sha256 the Hub lists at that moment.
func TestDiscoverRecommendedOneClick(t *testing.T) {
	rec := models.RecommendedModels[0]
	model, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	f := newDiscoverFixture(t, "", hubtest.Repo{ID: rec.Repo, Files: []hubtest.File{{Path: rec.File, Content: model}}})
	v := f.open()
	f.tu.onUI(func() { test.Tap(v.recButtons[0]) })
	f.tu.waitFor(t, "the suggestion's download to finish", 20*time.Second, func() bool {
		r := f.tu.modelsScreen().rows[rec.File]
		return r != nil && r.d.Progress().State == models.Done
	})
	if got, err := fileSHA256(filepath.Join(f.tu.modelsFolder(), rec.File)); err != nil || got != testenv.ModelSHA256 {
		t.Fatalf("sha256 %s, %v", got, err)
	}
}

// TestDiscoverUnreachableHubSaysWhatToCheck: no Hub at HF_ENDPOINT gives the fix.
func TestDiscoverUnreachableHubSaysWhatToCheck(t *testing.T) {
	f := newDiscoverFixture(t, "")
	f.fake.Close()
	v := f.open()
	f.search(t, v, "qwen")
	f.tu.onUI(func() {
		if !strings.Contains(v.status.Text, "check the connection") || !strings.Contains(v.status.Text, "HF_ENDPOINT") {
			t.Fatalf("status = %q", v.status.Text)
		}
	})
}

// TestDiscoverOpensWithCtrlDAndClosesWithEscape: Ctrl+D opens Discover with the search
// box focused (no Hub call until a search); Escape closes it and ends its calls.
func TestDiscoverOpensWithCtrlDAndClosesWithEscape(t *testing.T) {
	f := newDiscoverFixture(t, "")
	f.tu.onUI(func() {
		sc := f.tu.win.Canvas().(fyne.Shortcutable)
		sc.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyD, Modifier: fyne.KeyModifierShortcutDefault})
		if len(f.tu.dialogs) != 1 || !containsText(f.tu.win.Canvas().Overlays().Top(), "Suggestions to start with") {
			t.Fatalf("Ctrl+D: %d dialogs, want Discover with its suggestions", len(f.tu.dialogs))
		}
		entry, ok := f.tu.win.Canvas().Focused().(*keyEntry)
		if !ok || entry.PlaceHolder == "" || !strings.HasPrefix(entry.PlaceHolder, "Search GGUF") {
			t.Fatalf("focus is on %T, want the search box", f.tu.win.Canvas().Focused())
		}
		entry.TypedKey(&fyne.KeyEvent{Name: fyne.KeyEscape})
		if len(f.tu.dialogs) != 0 {
			t.Fatalf("Escape left %d dialogs", len(f.tu.dialogs))
		}
		b := f.tu.discoverButton()
		test.Tap(b)
		if len(f.tu.dialogs) != 1 || b.Text != "Discover…" {
			t.Fatalf("the Discover… button (%q) opened %d dialogs", b.Text, len(f.tu.dialogs))
		}
		f.tu.closeTopDialog()
	})
	if n := len(f.fake.Requests()); n != 0 {
		t.Fatalf("opening Discover sent %d requests to the Hub; it should wait for a search", n)
	}
}
