package ui

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestQueenRefreshKeepsUnappliedChoice chooses Remote and types its URL while the
// embedded Queen runs and status refreshes arrive (issue 13): the radio, the form shown
// and both entries stay as the user left them until Connect applies them; the radio
// still follows the core when an apply or Stop changes the mode.
func TestQueenRefreshKeepsUnappliedChoice(t *testing.T) {
	tu := newTestUI(t)
	q := tu.queen
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	tu.onUI(func() {
		q.addr.SetText(addr)
		q.mode.SetSelected(modeLabels[1]) // Embedded dev Queen
	})
	tu.waitFor(t, "the embedded Queen to run", 20*time.Second, func() bool {
		return q.state.Embedded && q.state.Connected && !q.mode.Disabled()
	})

	// Remote, then the URL typed in two parts with refreshes in between, as the screen
	// gets them: publish hands setState the core's picture.
	const url = "http://127.0.0.1:18959"
	tu.onUI(func() {
		q.mode.SetSelected(modeLabels[2]) // Remote Queen: no URL yet, nothing applied
		for _, part := range []string{url[:9], url[9:]} {
			q.setState(tu.core.QueenState())
			test.Type(q.url, part)
			q.setState(tu.core.QueenState())
		}
		q.status.SetText("")
	})
	// And one refresh through the app's own path: a core change reaches publish.
	if err := tu.core.SaveSettings(tu.core.Settings()); err != nil {
		t.Fatalf("SaveSettings: %v", err)
	}
	tu.waitFor(t, "a status refresh", 10*time.Second, func() bool { return q.status.Text != "" })

	tu.onUI(func() {
		if q.mode.Selected != modeLabels[2] {
			t.Errorf("mode reads %q after status refreshes, want %q", q.mode.Selected, modeLabels[2])
		}
		if !q.panels[app.QueenRemote].Visible() || q.panels[app.QueenEmbedded].Visible() {
			t.Errorf("the embedded form replaced the remote one")
		}
		if q.url.Text != url {
			t.Errorf("remote URL reads %q, want %q", q.url.Text, url)
		}
		if q.addr.Text != addr {
			t.Errorf("embedded address reads %q, want %q", q.addr.Text, addr)
		}
	})
	if st := tu.core.Settings(); st.QueenMode != app.QueenEmbedded || st.RemoteURL != "" {
		t.Fatalf("an unapplied choice reached the settings: %+v", st)
	}

	// Connect applies it.
	tu.onUI(func() { q.apply(app.QueenRemote) })
	tu.waitFor(t, "the remote mode to be applied", 20*time.Second, func() bool {
		return q.state.Mode == app.QueenRemote && !q.mode.Disabled()
	})
	if st := tu.core.Settings(); st.QueenMode != app.QueenRemote || st.RemoteURL != url {
		t.Fatalf("Connect did not save the remote Queen: %+v", st)
	}

	// A mode changed by the core (Stop on the embedded form) moves the radio.
	tu.onUI(func() { q.mode.SetSelected(modeLabels[1]) })
	tu.waitFor(t, "the embedded Queen to run again", 20*time.Second, func() bool {
		return q.state.Embedded && !q.mode.Disabled()
	})
	tu.onUI(func() { test.Tap(q.startBt) }) // Stop
	tu.waitFor(t, "the radio to follow Stop to Off", 20*time.Second, func() bool {
		return q.state.Mode == app.QueenOff && q.mode.Selected == modeLabels[0] &&
			q.panels[app.QueenOff].Visible()
	})
}

// TestTestConnectionWithoutTokenSaysSo: "Test connection" with no token set must not say
// the Queen "accepts the token" (issue 13): there was none to accept.
func TestTestConnectionWithoutTokenSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case wire.PathHealth:
			_ = json.NewEncoder(w).Encode(wire.QueenHealth{Version: "9.9"})
		case wire.PathWorkers:
			_ = json.NewEncoder(w).Encode(wire.WorkerList{})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tu := newTestUI(t)
	q := tu.queen
	for _, tc := range []struct{ token, want string }{{"", "needs no token"}, {"s3cret", "accepts the token"}} {
		tu.onUI(func() {
			q.status.SetText("")
			q.url.SetText(srv.URL)
			q.remTok.SetText(tc.token)
			q.testRemote()
		})
		tu.waitFor(t, "the test's result", 10*time.Second, func() bool { return strings.HasPrefix(q.status.Text, "Test passed") })
		tu.onUI(func() {
			if !strings.Contains(q.status.Text, tc.want) {
				t.Errorf("token %q: status %q, want it to say %q", tc.token, q.status.Text, tc.want)
			}
		})
	}
}

// TestQueenListCells: the Queen's worker list shows each worker's device and KV cache
// use compactly, the details in tooltips.
func TestQueenListCells(t *testing.T) {
	w := wire.Worker{Device: "Vulkan0 (llvmpipe)", Runtime: "linux-x64-vulkan-3.21.1", DeviceFreeBytes: 3 << 30,
		Slots: 4, KVCacheTokens: 3100, KVCacheCapacity: 32768}
	cases := []struct {
		col       int
		w         wire.Worker
		text, tip string
	}{
		{qcolDevice, w, "Vulkan0 (llvmpipe)", "llama.cpp build linux-x64-vulkan-3.21.1 · 3.0 GB free on the device"},
		{qcolDevice, wire.Worker{Device: "cpu"}, "cpu", ""},
		{qcolDevice, wire.Worker{}, "—", "not reported yet (it comes with the worker's heartbeats)"},
		{qcolKV, w, "3.1k / 33k", "3100 of 32768 tokens of KV cache in use, 4 slots"},
		{qcolKV, wire.Worker{KVCacheTokens: 12, KVCacheCapacity: 256, Slots: 1}, "12 / 256", "12 of 256 tokens of KV cache in use, 1 slot"},
	}
	for _, tc := range cases {
		text, _, tip := queenWorkerCell(tc.w, tc.col)
		if text != tc.text || tip != tc.tip {
			t.Errorf("column %s of %+v: %q (%q), want %q (%q)", queenCols[tc.col].title, tc.w, text, tip, tc.text, tc.tip)
		}
	}
}
