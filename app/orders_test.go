package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The app's hive serves spawn orders from its Queen (here the embedded one) for the
// models it knows: the recent models, then the models folder.
func TestAppServesSpawnOrdersForItsModels(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	fa := test.NewTempApp(t)
	s := DefaultSettings()
	port := testenv.FreePort(t)
	s.PortMin, s.PortMax = port, port+10
	s.ModelsFolder = t.TempDir() // empty: the model is only a recent one
	s.RecentModels = []string{testenv.Model(t)}
	s.StopWorkersOnQuit = true
	s.Save(fa.Preferences())
	a, err := New(Config{Prefs: fa.Preferences(), StateDir: home + "/state", WorkerBinary: testenv.Binary(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if err := a.SetQueen(context.Background(), QueenEmbedded, addr, ""); err != nil {
		t.Fatal(err)
	}
	// The embedded Queen made its token on this first start (issue 15 item 7).
	c, err := queenclient.New("http://"+addr, a.Settings().EmbeddedToken, queenclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: wire.ModelName(testenv.Model(t))})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the order served by the app's hive", 30*time.Second, func() bool {
		got, err := c.SpawnOrder(context.Background(), o.OrderID)
		if err == nil && got.State == wire.OrderFailed {
			t.Fatalf("order failed: %s", got.Error)
		}
		o = got
		return err == nil && got.State == wire.OrderDone
	})
	e, ok := a.Hive().Get(o.WorkerID)
	if !ok || e.SpawnOrder != o.OrderID || e.ModelPath != testenv.Model(t) {
		t.Fatalf("the app's hive holds %+v for order %s", e, o.OrderID)
	}
}

// A model loaded for the app's endpoint is unloaded after the Settings' idle time (here
// a per-model override of the default): the worker records it and stops by itself.
func TestAppUnloadsIdleModelsLoadedOnRequest(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	fa := test.NewTempApp(t)
	s := DefaultSettings()
	port := testenv.FreePort(t)
	s.PortMin, s.PortMax = port, port+10
	s.ModelsFolder = t.TempDir()
	s.RecentModels = []string{testenv.Model(t)}
	s.StopWorkersOnQuit = true
	model := wire.ModelName(testenv.Model(t))
	s.IdleTTL, s.ModelTTL = time.Hour, map[string]time.Duration{model: time.Second}
	s.Save(fa.Preferences())
	if got := LoadSettings(fa.Preferences()); got.TTLFor(model) != time.Second || got.TTLFor("other") != time.Hour {
		t.Fatalf("idle times after a round trip: %v / %v", got.TTLFor(model), got.TTLFor("other"))
	}
	a, err := New(Config{Prefs: fa.Preferences(), StateDir: home + "/state", WorkerBinary: testenv.Binary(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if err := a.SetQueen(context.Background(), QueenEmbedded, addr, ""); err != nil {
		t.Fatal(err)
	}
	c, err := queenclient.New("http://"+addr, a.Settings().EmbeddedToken, queenclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.OrderSpawn(context.Background(), wire.SpawnOrderRequest{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the order served", 30*time.Second, func() bool {
		got, err := c.SpawnOrder(context.Background(), o.OrderID)
		o = got
		return err == nil && got.State == wire.OrderDone
	})
	if e, _ := a.Hive().Get(o.WorkerID); e.TTL != "1s" {
		t.Fatalf("the order's worker has TTL %q, want the model's 1s", e.TTL)
	}
	testenv.WaitFor(t, "the idle worker stopped", 20*time.Second, func() bool {
		e, ok := a.Hive().Get(o.WorkerID)
		return !ok || !e.State.Live()
	})
}

func TestParseModelTTLs(t *testing.T) {
	m, err := ParseModelTTLs("a = 30m\n\n  b=0\n")
	if err != nil || m["a"] != 30*time.Minute || m["b"] != 0 || len(m) != 2 {
		t.Fatalf("got %v, %v", m, err)
	}
	if got, _ := ParseModelTTLs(FormatModelTTLs(m)); len(got) != 2 || got["a"] != 30*time.Minute {
		t.Fatalf("format/parse round trip: %v", got)
	}
	for _, bad := range []string{"a", "= 5m", "a = soon", "a = -1m", "a = 9999h"} {
		if _, err := ParseModelTTLs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
