package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

func status(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestEmbeddedQueenMakesItsToken (issue 15 item 7): the embedded Queen's first start
// makes a random token, saved in the settings and kept on the next start; the Queen
// requires it, and the workers the app spawns get it (and so require it too).
func TestEmbeddedQueenMakesItsToken(t *testing.T) {
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
	defer a.Close()
	var addr string
	for try := 0; ; try++ { // a free port may be taken by another test process meanwhile
		addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		err := a.SetQueen(context.Background(), QueenEmbedded, addr, "")
		if err == nil {
			break
		}
		if try == 2 {
			t.Fatal(err)
		}
	}
	tok := a.Settings().EmbeddedToken
	if len(tok) < 20 {
		t.Fatalf("embedded Queen token %q, want a random one", tok)
	}
	if got := LoadSettings(fa.Preferences()).EmbeddedToken; got != tok {
		t.Fatalf("saved token %q, want %q", got, tok)
	}
	base := "http://" + addr
	if got := status(t, base+wire.PathWorkers, ""); got != http.StatusUnauthorized {
		t.Fatalf("the embedded Queen without its token: %d", got)
	}
	if got := status(t, base+wire.PathWorkers, tok); got != http.StatusOK {
		t.Fatalf("with its token: %d", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := a.Hive().Spawn(ctx, hive.SpawnRequest{ModelPath: testenv.Model(t), RegisterWithQueen: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spawner.StopPID(context.Background(), e.PID, e.ProcessStart, 5*time.Second) })
	if got := status(t, e.URL()+wire.PathModels, ""); got != http.StatusUnauthorized {
		t.Fatalf("the app's worker without the token: %d", got)
	}
	if got := status(t, e.URL()+wire.PathModels, tok); got != http.StatusOK {
		t.Fatalf("the app's worker with the token: %d", got)
	}

	// Off and on again: the same token.
	if err := a.SetQueen(context.Background(), QueenOff, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := a.SetQueen(context.Background(), QueenEmbedded, addr, ""); err != nil {
		t.Fatal(err)
	}
	if got := a.Settings().EmbeddedToken; got != tok {
		t.Fatalf("token after a restart %q, want %q", got, tok)
	}
}

// TestSettingsFileOwnerOnly: the preferences file that holds the tokens is made 0600,
// and created 0600 when it does not exist yet.
func TestSettingsFileOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "io.beekeeper.app")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "preferences.json")
	ownerOnlyPrefs(dir)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new settings file: %v %v", st, err)
	}
	if err := os.WriteFile(path, []byte(`{"queen_embedded_token":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	ownerOnlyPrefs(dir)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("existing settings file: %v %v", st, err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"queen_embedded_token":"x"}` {
		t.Fatalf("the settings were changed: %s", b)
	}
}
