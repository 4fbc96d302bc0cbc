package ui

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The layout checks (issue 13, items 2 and 8): every screen but Models (models_test.go
// has its own) at 800×500 and 1,400×900 with the longest realistic texts, looked at the
// way a user would: nothing cut, nothing on top of something else, no cut text without a
// tooltip, and no screen that makes the window wider than 800 px.

// newLayoutUI is the app's UI on the test driver with nothing following the hive or the
// Queen: the test puts realistic content on the screens and nothing replaces it. The
// screens' own hops (u.do) and onUI share one lock, the "UI thread".
func newLayoutUI(t *testing.T) (u *UI, onUI func(func())) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	a := test.NewTempApp(t)
	s := app.DefaultSettings()
	s.LlamaLib = testenv.Runtime(t)
	s.Save(a.Preferences())
	core, err := app.New(app.Config{Prefs: a.Preferences(), StateDir: filepath.Join(home, "state"), WorkerBinary: testenv.Binary(t)})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	t.Cleanup(func() { _ = core.Close() })
	w := a.NewWindow("Beekeeper")
	var mu sync.Mutex
	onUI = func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		f()
	}
	onUI(func() {
		u = newUI(a, w, core, onUI)
		fillLongTexts(u)
	})
	t.Cleanup(u.Close)
	return u, onUI
}

// fillLongTexts puts the longest texts the screens meet in practice on them: long worker
// ids and model names, a Queen on a long host name that is unreachable, a long chat.
func fillLongTexts(u *UI) {
	code, crash := 0, -1
	started := time.Now().Add(-26 * time.Hour)
	var entries []hive.Entry
	for i, model := range []string{"Meta-Llama-3.1-8B-Instruct-Q4_K_M", "qwen2.5-coder-14b-instruct-q5_k_m", "stories260K"} {
		e := hive.Entry{ID: fmt.Sprintf("llm-192.168.100.200-%d", 18080+i), PID: 4194304 + i, Port: 18080 + i,
			Model: model, WorkerType: "llm", StartedAt: started, State: hive.StateReady, Sync: hive.SyncRegistered}
		entries = append(entries, e)
	}
	entries[1].State, entries[1].LoadProgress = hive.StateStarting, 0.42
	entries = append(entries,
		hive.Entry{ID: "embed-192.168.100.200-18090", Port: 18090, Model: "nomic-embed-text-v1.5.f16", WorkerType: "embed", State: hive.StateCrashed, ExitCode: &crash, ExitReason: "killed by a signal"},
		hive.Entry{ID: "llm-192.168.100.200-18091", Port: 18091, Model: "TinyLlama-1.1B-Chat-v1.0.Q8_0", WorkerType: "llm", State: hive.StateExited, ExitCode: &code})
	stats := map[string]hive.Stats{entries[0].ID: {CPUPercent: 387, RSSBytes: 5 << 30}}
	u.workers.setRows(buildRows(entries, stats, time.Now()))

	long := "http://queen-primary.cluster-one.example.internal:7833"
	u.queen.setState(app.QueenState{Mode: app.QueenRemote, URL: long, Error: "Get \"" + long +
		"/v1/health\": dial tcp 10.200.30.40:7833: connect: connection refused (is the Queen running? check the URL and the firewall)"})
	now := time.Now()
	qw := []wire.Worker{}
	for i, e := range entries[:3] {
		qw = append(qw, wire.Worker{WorkerID: e.ID, Hostname: "workstation-with-a-long-name.example.internal", Port: e.Port,
			Model: e.Model, SpawnedBy: "hive-workstation-with-a-long-name", State: wire.StateOnline, LastHeartbeatAt: &now,
			Device: []string{"Vulkan0 (AMD Radeon RX 7900 XTX (RADV NAVI31))", "cpu", "CUDA0 (NVIDIA GeForce RTX 4090)"}[i],
			Slots:  4, KVCacheTokens: 3100 * (i + 1), KVCacheCapacity: 32768, Runtime: "linux-x64-vulkan-3.21.1"})
	}
	u.queen.workers = qw
	u.queen.list.Refresh()
	u.queen.endpoint.setStatus(long, []app.EndpointModel{
		{Name: "Meta-Llama-3.1-8B-Instruct-Q4_K_M", Status: app.ModelLoaded, Where: "beekeeper", Workers: []string{entries[0].ID, entries[1].ID}},
		{Name: "qwen2.5-coder-14b-instruct-q5_k_m", Status: app.ModelLoading, Where: "hive-workstation-with-a-long-name"},
		{Name: "stories260K", Status: app.ModelIdle, Where: "beekeeper", Workers: []string{entries[2].ID}},
		{Name: "TinyLlama-1.1B-Chat-v1.0.Q8_0", Status: app.ModelLoadable, Where: "hive-workstation-with-a-long-name"},
	}, nil)

	if v := u.chat; v != nil {
		v.summaries = []chat.Summary{{ID: "x", Title: "Explain the difference between a mutex and a semaphore in plain words, with examples",
			Model: "Meta-Llama-3.1-8B-Instruct-Q4_K_M", Updated: now}}
		v.list.Refresh()
		v.conv.Messages = append(v.conv.Messages,
			chat.Message{Role: "user", Content: "Please explain https://example.com/a/very/long/path/that/does/not/break/anywhere/because/it/has/no/spaces/index.html"},
			chat.Message{Role: "assistant", Content: "Sure:\n\n```\nfunc main() { fmt.Println(\"a long line of code that goes on and on and on and on and on\") }\n```\nOnce upon a time there was a fairie!\nShe flew.",
				Metrics:    &chat.Metrics{CompletionTokens: 4096, TokensPerSecond: 123.4, TimeToFirstToken: 1234 * time.Millisecond},
				AnsweredBy: entries[0].ID},
			chat.Message{Role: "assistant", Content: "Part", ErrorKind: chat.ErrWorkerGone,
				Error: "worker llm-192.168.100.200-18080 at http://192.168.100.200:18080 is unreachable: Post \"http://192.168.100.200:18080/v1/chat/completions\": dial tcp: connect: connection refused"})
		v.showConversation()
		t := chat.Target{Kind: chat.TargetQueen, BaseURL: long, Model: "Meta-Llama-3.1-8B-Instruct-Q4_K_M"}
		v.targets = []chat.Target{t}
		v.conv.Target = t
		v.reach[targetKey(t)] = &reach{err: "Get \"" + long + "/v1/models\": dial tcp 10.200.30.40:7833: connect: connection refused"}
		v.renderTargets()
	}
	u.logs.path.SetText("/home/someone-with-a-long-name/.local/state/beekeeper/logs/llm-192.168.100.200-18080.log")
}

// screensToCheck are the tabs these tests look at (Models has its own).
func screensToCheck(u *UI) []*container.TabItem {
	return []*container.TabItem{u.tabWorkers, u.tabChat, u.tabQueen, u.tabLogs, u.tabSettings}
}

// TestNoScreenWidensTheWindow: with the longest realistic texts on every screen, no tab
// asks for more than 800 px (issue 13: the Queen's status line, an unreachable error and
// an opened chat each made the window wider than the user had made it).
func TestNoScreenWidensTheWindow(t *testing.T) {
	u, onUI := newLayoutUI(t)
	onUI(func() {
		for _, tab := range u.tabs.Items {
			u.tabs.Select(tab)
			if w := u.win.Content().MinSize().Width; w > 800 {
				t.Errorf("with the %s screen shown the window needs %.0f px, more than 800:\n%s", tab.Text, w, widest(tab.Content, 800))
			}
		}
	})
}

// widest names the objects under o that ask for more than limit px, outermost first.
func widest(o fyne.CanvasObject, limit float32) string {
	var b strings.Builder
	var walk func(o fyne.CanvasObject, depth int)
	walk = func(o fyne.CanvasObject, depth int) {
		if o == nil || !o.Visible() || o.MinSize().Width <= limit || depth > 12 {
			return
		}
		fmt.Fprintf(&b, "%s%T %.0f %s\n", strings.Repeat("  ", depth), o, o.MinSize().Width, describe(o))
		for _, c := range children(o) {
			walk(c, depth+1)
		}
	}
	walk(o, 0)
	return b.String()
}

// TestScreensLayOutCleanly checks every screen (but Models) at 800×500 and 1,400×900 for
// what layoutProblems can see: cut objects, overlapping or escaping siblings, cut text
// without a tooltip.
func TestScreensLayOutCleanly(t *testing.T) {
	u, onUI := newLayoutUI(t)
	onUI(func() {
		for _, size := range []fyne.Size{{Width: 800, Height: 500}, {Width: 1400, Height: 900}} {
			u.win.Resize(size)
			for _, tab := range screensToCheck(u) {
				u.tabs.Select(tab)
				parts := []*container.TabItem{nil}
				if tab == u.tabQueen { // the endpoint's models, then the Queen's workers
					parts = u.queen.parts.Items
				}
				for _, part := range parts {
					name := tab.Text
					if part != nil {
						u.queen.parts.Select(part)
						name += " / " + part.Text
					}
					u.win.Content().Refresh()
					for _, p := range layoutProblems(u.win.Content()) {
						t.Errorf("%.0f×%.0f %s: %s", size.Width, size.Height, name, p)
					}
				}
			}
		}
	})
}

// TestTablesFitTheirWidth: the Workers and Queen tables show whole columns only, their row
// actions included, without a horizontal scroll, at both sizes.
func TestTablesFitTheirWidth(t *testing.T) {
	u, onUI := newLayoutUI(t)
	onUI(func() {
		for _, size := range []fyne.Size{{Width: 800, Height: 500}, {Width: 1400, Height: 900}} {
			u.win.Resize(size)
			for _, c := range []struct {
				tab, part *container.TabItem
				fit       *fitTable
			}{{u.tabWorkers, nil, u.workers.fit}, {u.tabQueen, u.queen.tabWorkers, u.queen.fit}, {u.tabQueen, u.queen.tabModels, u.queen.endpoint.fit}} {
				u.tabs.Select(c.tab)
				if c.part != nil {
					u.queen.parts.Select(c.part)
				}
				u.win.Content().Refresh()
				used := float32(0)
				var titles []string
				for i, col := range c.fit.shown {
					used += colWidth(c.fit, i) + theme.Padding()
					titles = append(titles, c.fit.cols[col].title)
				}
				if view := c.fit.table.Size().Width; used > view+0.5 {
					t.Errorf("%.0f×%.0f %s: the columns take %.0f px of a %.0f px table: %q", size.Width, size.Height, c.tab.Text, used, view, titles)
				}
				if size.Width == 800 && len(titles) < min(5, len(c.fit.cols)) {
					t.Errorf("%s at 800 px shows only %q", c.tab.Text, titles)
				}
				if c.tab == u.tabWorkers && c.fit.shown[len(c.fit.shown)-1] != colActions {
					t.Errorf("%.0f×%.0f: the row actions are not shown", size.Width, size.Height)
				}
			}
		}
	})
}

// colWidth is the width fitTable gave the table's column i.
func colWidth(f *fitTable, i int) float32 {
	_, widths := fitColumns(f.cols, f.width, theme.Padding())
	return widths[i]
}
