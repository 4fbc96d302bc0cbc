package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

func TestSettingsRoundTripThroughPreferences(t *testing.T) {
	a := test.NewTempApp(t)
	s := DefaultSettings()
	s.ModelsFolder = "/models"
	s.PortMin, s.PortMax = 9000, 9010
	s.StopWorkersOnQuit = true
	s.HeartbeatInterval = 750 * time.Millisecond
	s.QueenMode, s.RemoteURL, s.RemoteToken = QueenRemote, "http://q:7833", "tok"
	s.RecentModels = []string{"/m/a.gguf"}
	s.Save(a.Preferences())
	got := LoadSettings(a.Preferences())
	if got.ModelsFolder != s.ModelsFolder || got.PortMin != 9000 || got.PortMax != 9010 || !got.StopWorkersOnQuit ||
		got.HeartbeatInterval != s.HeartbeatInterval || got.QueenMode != QueenRemote || got.RemoteToken != "tok" ||
		len(got.RecentModels) != 1 {
		t.Fatalf("round trip: got %+v, want %+v", got, s)
	}
}

func TestLoadSettingsRepairsBadValues(t *testing.T) {
	a := test.NewTempApp(t)
	p := a.Preferences()
	p.SetInt(keyPortMin, 9000)
	p.SetInt(keyPortMax, 80) // below the first port
	p.SetString(keyQueenMode, "sideways")
	p.SetInt(keyHeartbeatMS, 1)
	got := LoadSettings(p)
	d := DefaultSettings()
	if got.PortMin != d.PortMin || got.PortMax != d.PortMax || got.QueenMode != QueenOff || got.HeartbeatInterval != d.HeartbeatInterval {
		t.Fatalf("bad stored values not repaired: %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("repaired settings invalid: %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Settings)
		field string
	}{
		{"port zero", func(s *Settings) { s.PortMin = 0 }, "port range"},
		{"range reversed", func(s *Settings) { s.PortMin, s.PortMax = 9000, 8000 }, "port range"},
		{"heartbeat too short", func(s *Settings) { s.HeartbeatInterval = time.Millisecond }, "heartbeat interval"},
		{"relative models folder", func(s *Settings) { s.ModelsFolder = "models" }, "models folder"},
		{"relative runtime", func(s *Settings) { s.LlamaLib = "lib" }, "llama.cpp runtime folder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			s.ModelsFolder = "/m"
			tc.edit(&s)
			var se *SettingsError
			if err := s.Validate(); !errors.As(err, &se) || se.Field != tc.field {
				t.Fatalf("Validate() = %v, want a SettingsError on %q", err, tc.field)
			}
		})
	}
}

func TestRecentModelsNewestFirstNoDuplicates(t *testing.T) {
	var r []string
	for _, p := range []string{"a", "b", "a", "c"} {
		r = withRecentModel(r, p)
	}
	if strings.Join(r, ",") != "c,a,b" {
		t.Fatalf("recent = %v", r)
	}
	for i := range 20 {
		r = withRecentModel(r, string(rune('d'+i)))
	}
	if len(r) != maxRecentModels {
		t.Fatalf("recent holds %d, want %d", len(r), maxRecentModels)
	}
}

func TestLogRingKeepsLastLinesAndWakesSubscribers(t *testing.T) {
	r := NewLogRing(3)
	ch, unsub := r.Subscribe()
	defer unsub()
	for _, l := range []string{"1\n", "2\n", "3\n", "4\n5\n"} {
		_, _ = r.Write([]byte(l))
	}
	if got := strings.Join(r.Lines(), ","); got != "3,4,5" {
		t.Fatalf("lines = %s, want 3,4,5", got)
	}
	select {
	case <-ch:
	default:
		t.Fatal("subscriber not woken")
	}
}

func TestNormalizeQueenURL(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:7833":         "http://127.0.0.1:7833",
		" http://q.local:7833/ ": "http://q.local:7833",
		"https://q.example":      "https://q.example",
	}
	for in, want := range cases {
		if got, err := NormalizeQueenURL(in); err != nil || got != want {
			t.Errorf("NormalizeQueenURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://q", "http://"} {
		if _, err := NormalizeQueenURL(bad); err == nil {
			t.Errorf("NormalizeQueenURL(%q) accepted", bad)
		}
	}
}

func TestTestQueenChecksHealthAndToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case wire.PathHealth:
			wire.WriteJSON(w, 200, wire.QueenHealth{Status: "ok", Version: "9.9"})
		case wire.PathWorkers:
			if r.Header.Get("Authorization") != wire.BearerPrefix+"right" {
				wire.WriteError(w, wire.NewError(401, wire.CodeUnauthorized, "bad token"))
				return
			}
			wire.WriteJSON(w, 200, wire.WorkerList{})
		}
	}))
	defer srv.Close()
	if v, err := TestQueen(context.Background(), srv.URL, "right"); err != nil || v != "9.9" {
		t.Fatalf("good token: %q, %v", v, err)
	}
	_, err := TestQueen(context.Background(), srv.URL, "wrong")
	var qe *QueenError
	if !errors.As(err, &qe) || !strings.Contains(qe.Fix, "token") {
		t.Fatalf("wrong token: %v, want a QueenError naming the token", err)
	}
	srv.Close()
	if _, err := TestQueen(context.Background(), srv.URL, "right"); !errors.As(err, &qe) {
		t.Fatalf("closed Queen: %v, want a QueenError", err)
	}
}

func TestEmbeddedQueenOnTakenAddressNamesTheFix(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	fa := test.NewTempApp(t)
	a, err := New(Config{Prefs: fa.Preferences(), StateDir: home + "/state"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = a.SetQueen(context.Background(), QueenEmbedded, taken.Addr().String(), "")
	var qe *QueenError
	if !errors.As(err, &qe) || qe.Mode != QueenEmbedded || !strings.Contains(qe.Fix, "address") {
		t.Fatalf("SetQueen on a taken address = %v, want a QueenError naming the address", err)
	}
	if st := a.QueenState(); st.Embedded || st.Error == "" {
		t.Fatalf("state after failure = %+v", st)
	}

	free := taken.Addr().(*net.TCPAddr)
	taken.Close()
	// The port just freed is an ephemeral one: any process's outgoing connection may take
	// it meanwhile, so a second free port is tried before calling that a failure.
	if err := a.SetQueen(context.Background(), QueenEmbedded, free.String(), "tok"); err != nil {
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		free = l.Addr().(*net.TCPAddr)
		l.Close()
		if err := a.SetQueen(context.Background(), QueenEmbedded, free.String(), "tok"); err != nil {
			t.Fatalf("SetQueen on a free address: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for st := a.QueenState(); !(st.Embedded && st.Connected); st = a.QueenState() {
		if time.Now().After(deadline) {
			t.Fatalf("embedded Queen never connected: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.SetQueen(context.Background(), QueenOff, "", ""); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", free.String()); err == nil {
		c.Close()
		t.Fatalf("embedded Queen still listens after switching off")
	}
}

// "Stop workers when the app quits" is read when the app quits: switched off during a
// session after starting with it on, quitting leaves the workers running.
func TestStopOnQuitSwitchedOffLeavesWorkersRunning(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	fa := test.NewTempApp(t)
	s := DefaultSettings()
	port := testenv.FreePort(t)
	s.PortMin, s.PortMax = port, port+10
	s.StopWorkersOnQuit = true
	s.Save(fa.Preferences())
	a, err := New(Config{Prefs: fa.Preferences(), StateDir: home + "/state", WorkerBinary: testenv.Binary(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := a.Hive().Spawn(ctx, hive.SpawnRequest{ModelPath: testenv.Model(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spawner.StopPID(context.Background(), e.PID, e.ProcessStart, 5*time.Second) })

	s = a.Settings()
	s.StopWorkersOnQuit = false
	if err := a.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !spawner.Alive(e.PID, e.ProcessStart) {
		t.Fatal("quitting stopped the worker although the setting was switched off")
	}
}

// A restarted app re-adopts the workers that outlived it with the saved Queen's token,
// the one they were spawned with: no "spawned with another API token" warning for its
// own healthy workers (the hive opens before SetQueen gives it the Queen).
func TestRestartAdoptsItsWorkersWithTheSavedToken(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	fa := test.NewTempApp(t)
	s := DefaultSettings()
	port := testenv.FreePort(t)
	s.PortMin, s.PortMax = port, port+10
	s.Save(fa.Preferences())
	cfg := func(ring *LogRing) Config {
		return Config{Prefs: fa.Preferences(), StateDir: home + "/state", WorkerBinary: testenv.Binary(t), Log: ring}
	}
	a, err := New(cfg(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	queenURL := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)) // nobody answers: the token is what counts
	if err := a.SetQueen(ctx, QueenRemote, queenURL, "restart-token"); err != nil {
		t.Fatal(err)
	}
	e, err := a.Hive().Spawn(ctx, hive.SpawnRequest{ModelPath: testenv.Model(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spawner.StopPID(context.Background(), e.PID, e.ProcessStart, 5*time.Second) })
	if err := a.Close(); err != nil { // stop-on-quit is off: the worker runs on
		t.Fatal(err)
	}

	ring := NewLogRing(200)
	b, err := New(cfg(ring))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, ok := b.Hive().Get(e.ID); !ok || !got.State.Live() {
		t.Fatalf("the restarted app holds %+v for its worker %s", got, e.ID)
	}
	for _, l := range ring.Lines() {
		if strings.Contains(l, "another API token") {
			t.Fatalf("the restarted app took its own worker for another token's:\n%s", strings.Join(ring.Lines(), "\n"))
		}
	}
}
