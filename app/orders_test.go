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
