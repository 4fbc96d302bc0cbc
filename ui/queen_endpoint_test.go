package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// endpointRows is the endpoint's model list as the table shows it: one line per model,
// "name | state | where".
func endpointRows(e *endpointPart) []string {
	var rows []string
	for _, m := range e.models {
		var cells []string
		for col := range endpointCols {
			text, _, _ := endpointModelCell(m, col)
			cells = append(cells, text)
		}
		rows = append(rows, strings.Join(cells, " | "))
	}
	return rows
}

func hasRow(e *endpointPart, want string) bool {
	for _, r := range endpointRows(e) {
		if r == want {
			return true
		}
	}
	return false
}

// copyModel puts the test model into dir under name.
func copyModel(t *testing.T, dir, name string) {
	t.Helper()
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQueenScreenShowsTheEndpoint (issue 12, the app as a local endpoint): with the
// embedded Queen on, the Queen screen shows the OpenAI endpoint's URL with a copy button
// that puts it on the clipboard, and every model of the models folder as loadable; a
// client's request for one loads it, and the screen shows it loaded by its worker.
func TestQueenScreenShowsTheEndpoint(t *testing.T) {
	tu := newTestUI(t)
	q := tu.queen
	copyModel(t, tu.modelsFolder(), "stories260K.gguf")
	copyModel(t, tu.modelsFolder(), "tiny-b.gguf")

	tu.onUI(func() {
		tu.tabs.Select(tu.tabQueen)
		if q.endpoint.row.Visible() || !strings.HasPrefix(q.endpoint.empty.Text, "Queenless: there is no endpoint") {
			t.Errorf("Queenless: URL row shown %v, note %q", q.endpoint.row.Visible(), q.endpoint.empty.Text)
		}
		q.addr.SetText("127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)))
		q.mode.SetSelected(modeLabels[1]) // Embedded dev Queen
	})
	var base string
	tu.waitFor(t, "both models listed as loadable", 30*time.Second, func() bool {
		base = endpointBase(tu.core.QueenState().URL)
		hive := "on " + tu.core.QueenState().Hive.OrdersAs
		return q.state.Connected && hasRow(q.endpoint, "stories260K | loadable | "+hive) && hasRow(q.endpoint, "tiny-b | loadable | "+hive)
	})
	tu.onUI(func() {
		if !q.endpoint.row.Visible() || q.endpoint.url.Text != base || !strings.HasSuffix(base, "/v1") {
			t.Errorf("URL row shown %v reads %q, want %q", q.endpoint.row.Visible(), q.endpoint.url.Text, base)
		}
		if !q.endpoint.key.Visible() {
			t.Errorf("the embedded Queen has a token, but the row does not say clients need it")
		}
		if q.endpoint.empty.Visible() || !q.endpoint.fit.holder.Visible() {
			t.Errorf("the list is hidden behind %q", q.endpoint.empty.Text)
		}
		if q.tabModels.Text != "Models (2)" {
			t.Errorf("models tab reads %q", q.tabModels.Text)
		}
		test.Tap(q.endpoint.copyBt)
		if got := tu.app.Clipboard().Content(); got != base {
			t.Errorf("Copy put %q on the clipboard, want %q", got, base)
		}
		if q.endpoint.copyBt.Text != "Copied" {
			t.Errorf("the copy button reads %q after a copy", q.endpoint.copyBt.Text)
		}
	})

	// A client names tiny-b: the Queen has the app's hive load it, then it is loaded.
	answer := askEndpoint(t, base, tu.core.Settings().EmbeddedToken, "tiny-b")
	t.Logf("tiny-b answered by %s", answer)
	tu.waitFor(t, "tiny-b shown loaded by its worker", 20*time.Second, func() bool {
		return hasRow(q.endpoint, "tiny-b | loaded · 1 worker | "+answer)
	})
	tu.onUI(func() {
		if !hasRow(q.endpoint, "stories260K | loadable | on "+tu.core.QueenState().Hive.OrdersAs) {
			t.Errorf("stories260K should still be loadable: %q", endpointRows(q.endpoint))
		}
	})
}

// askEndpoint sends one short chat request for model to the endpoint and returns the
// worker that answered.
func askEndpoint(t *testing.T, base, token, model string) string {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":4}`, model)
	req, err := http.NewRequest(http.MethodPost, base+"/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", wire.BearerPrefix+token)
	hc := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{DialContext: new(testenv.LoopbackDialer).DialContext}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("request for %s: %v", model, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("request for %s: %d %s", model, resp.StatusCode, b)
	}
	return resp.Header.Get(queen.HeaderWorker)
}

// TestQueenScreenShowsARemoteQueensEndpoint: with a remote Queen, the screen shows that
// Queen's URL and its models the same way: one a hive of its own can load, and one its
// worker serves (busy, from its heartbeat).
func TestQueenScreenShowsARemoteQueensEndpoint(t *testing.T) {
	const token = "remote-secret"
	rq, err := queen.New(queen.Config{Token: token, Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- rq.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-served })
	remote := "http://" + ln.Addr().String()

	post := func(path string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, remote+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", wire.BearerPrefix+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, out)
		}
	}
	post(wire.PathHives, wire.HiveReport{Hive: "hive-gpu-box", Models: []wire.HiveModel{{Name: "qwen2.5-7b-instruct-q4_k_m", SizeBytes: 4 << 30}}})
	// A worker of that Queen's, answering a request now (it is never dialled here).
	post(wire.PathRegisterWorker, wire.RegisterRequest{WorkerID: "llm-gpu-box-8080", Hostname: "127.0.0.1", Port: testenv.FreePort(t),
		WorkerType: "llm", Model: "llama-3.2-3b-instruct"})
	post(wire.PathHeartbeat, wire.Heartbeat{WorkerID: "llm-gpu-box-8080", Status: "busy", ActiveRequests: 1})

	tu := newTestUI(t)
	q := tu.queen
	tu.onUI(func() {
		tu.tabs.Select(tu.tabQueen)
		q.mode.SetSelected(modeLabels[2]) // Remote Queen: nothing applied without a URL
		q.url.SetText(remote)
		q.remTok.SetText(token)
		q.apply(app.QueenRemote)
	})
	tu.waitFor(t, "the remote Queen's models", 20*time.Second, func() bool {
		return hasRow(q.endpoint, "qwen2.5-7b-instruct-q4_k_m | loadable | on hive-gpu-box") &&
			hasRow(q.endpoint, "llama-3.2-3b-instruct | loaded · 1 worker, busy | llm-gpu-box-8080")
	})
	tu.onUI(func() {
		if q.endpoint.url.Text != remote+"/v1" || !q.endpoint.row.Visible() || !q.endpoint.key.Visible() {
			t.Errorf("URL row reads %q (shown %v, key note %v), want %s/v1", q.endpoint.url.Text, q.endpoint.row.Visible(), q.endpoint.key.Visible(), remote)
		}
		test.Tap(q.endpoint.copyBt)
		if got := tu.app.Clipboard().Content(); got != remote+"/v1" {
			t.Errorf("Copy put %q on the clipboard", got)
		}
	})

	// Back to Queenless: no endpoint, no models left over.
	tu.onUI(func() { q.apply(app.QueenOff) })
	tu.waitFor(t, "the endpoint gone", 20*time.Second, func() bool {
		return q.state.Mode == app.QueenOff && !q.endpoint.row.Visible() && len(q.endpoint.models) == 0 &&
			q.tabModels.Text == "Models"
	})
}

// TestEndpointModelCells: each state reads as a user would say it, the details in the
// tooltips.
func TestEndpointModelCells(t *testing.T) {
	cases := []struct {
		m                app.EndpointModel
		state, where     string
		imp              widget.Importance
		stateTip, wheret string
	}{
		{app.EndpointModel{Name: "a", Status: app.ModelIdle, Where: "beekeeper", Workers: []string{"llm-1"}},
			"loaded · 1 worker", "llm-1", widget.SuccessImportance, "loaded, no request in flight", "served by llm-1"},
		{app.EndpointModel{Name: "a", Status: app.ModelLoaded, Where: "beekeeper", Workers: []string{"llm-1", "llm-2"}},
			"loaded · 2 workers, busy", "llm-1, llm-2", widget.SuccessImportance, "answering requests now", "served by llm-1, llm-2"},
		{app.EndpointModel{Name: "a", Status: app.ModelLoading, Where: "hive-x"},
			"loading…", "on hive-x", widget.WarningImportance, "a hive is starting a worker for it; requests that name it wait for it", "the hive that loads it"},
		{app.EndpointModel{Name: "a", Status: app.ModelLoadable, Where: "hive-x"},
			"loadable", "on hive-x", widget.MediumImportance, "not loaded: the first request that names it loads it on hive-x", "the hive that loads it"},
	}
	for _, tc := range cases {
		state, imp, tip := endpointModelCell(tc.m, ecolState)
		where, _, wtip := endpointModelCell(tc.m, ecolWhere)
		if state != tc.state || imp != tc.imp || tip != tc.stateTip || where != tc.where || wtip != tc.wheret {
			t.Errorf("%+v: %q (%v, %q) | %q (%q)", tc.m, state, imp, tip, where, wtip)
		}
	}
}
