package cli_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// TestHiveProvesSpawnedWorkersKey (issue 15 item 5, real processes): a worker spawned by
// the hive writes its identity key to its owner-only key file; the hive's registration
// carries it, so the Queen binds the id to the worker's key. The Queen listens on
// 127.0.0.2 and so calls the worker from 127.0.0.1, not from its own URL's address: the
// worker takes the Queen only because the Queen (from the hive's registration) and the
// hive (from the key file) prove its key. Then the id cannot be deleted without the key,
// and the worker's own goodbye (with its key) removes it.
func TestHiveProvesSpawnedWorkersKey(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	t.Setenv(wire.EnvQueenToken, "")
	queenAddr := fmt.Sprintf("127.0.0.2:%d", testenv.FreePort(t))
	queenURL := "http://" + queenAddr
	q := testenv.StartProcess(t, "queen", "--addr", queenAddr, "--heartbeat-interval", "300ms")
	t.Cleanup(func() { q.Stop(5 * time.Second) })
	q.WaitOutput("queen listening", 10*time.Second)

	port := testenv.FreePort(t)
	id := wire.WorkerID(wire.DefaultWorkerType, wire.DefaultHost, port)
	run(t, "spawn", "--model", testenv.Model(t), "--port", strconv.Itoa(port)) // Queenless
	t.Cleanup(func() { _, _ = exec.Command(testenv.Binary(t), "stop", id).CombinedOutput() })
	keyFile := filepath.Join(home, "state", "worker-keys", fmt.Sprintf("%s.%d.key", id, port))
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the worker's key file %s: %v (want mode 0600)", keyFile, err)
	}

	h := testenv.StartProcess(t, "hive", "--queen", queenURL, "--models", t.TempDir(), "--id", "hive-test")
	t.Cleanup(func() { h.Stop(5 * time.Second) })
	testenv.WaitFor(t, "the hive's worker online at the Queen on 127.0.0.2", 15*time.Second, func() bool {
		w, ok := queenWorker(queenURL, id)
		return ok && w.State == wire.StateOnline
	})

	// Bound to the worker's key: nobody else deletes it or takes its id.
	req, _ := http.NewRequest(http.MethodDelete, queenURL+wire.PathWorkers+"/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("DELETE without the worker's key: %d, want 409", resp.StatusCode)
	}
	body := fmt.Sprintf(`{"worker_id":%q,"hostname":"127.0.0.1","port":1,"worker_type":"llm","model":"evil","worker_key":"%s"}`, id, strings.Repeat("E", 32))
	resp, err = http.Post(queenURL+wire.PathRegisterWorker, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("registering the live worker's id elsewhere: %d, want 409", resp.StatusCode)
	}

	run(t, "stop", id)
	testenv.WaitFor(t, "the Queen to forget the stopped worker", 5*time.Second, func() bool {
		_, ok := queenWorker(queenURL, id)
		return !ok
	})
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("the key file outlived its worker: %v", err)
	}
}

// TestTokensFromEnvironment (issue 15 item 7, real processes): with only
// $BEEKEEPER_QUEEN_TOKEN set, the Queen, the headless hive, `order` and `ps` all use the
// token, and the worker the hive starts requires it.
func TestTokensFromEnvironment(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	t.Setenv(wire.EnvQueenToken, "env-tok") // every child inherits it
	folder := t.TempDir()
	if err := os.Symlink(testenv.Model(t), filepath.Join(folder, "stories260K.gguf")); err != nil {
		t.Fatal(err)
	}
	queenAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	queenURL := "http://" + queenAddr
	q := testenv.StartProcess(t, "queen", "--addr", queenAddr, "--heartbeat-interval", "300ms")
	t.Cleanup(func() { q.Stop(5 * time.Second) })
	q.WaitOutput("queen listening", 10*time.Second)
	h := testenv.StartProcess(t, "hive", "--queen", queenURL, "--models", folder, "--id", "hive-env")
	t.Cleanup(func() { h.Stop(5 * time.Second) })
	h.WaitOutput("serving Queen", 10*time.Second)

	out, err := exec.Command(testenv.Binary(t), "order", "--queen", queenURL, "--model", "stories260K", "--wait", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("order with the token from the environment: %v\n%s\nhive said:\n%s", err, out, h.Output())
	}
	m := regexp.MustCompile(`worker (\S+) serves`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("order said:\n%s", out)
	}
	id := string(m[1])
	t.Cleanup(func() { _, _ = exec.Command(testenv.Binary(t), "stop", id).CombinedOutput() })
	if line := psLine(t, id); !strings.Contains(line, "online") {
		t.Fatalf("ps line %q, want the Queen's live state (ps reads the token too)", line)
	}
	port := regexp.MustCompile(`worker-llm-(\d+)`).FindStringSubmatch(id)
	if port == nil {
		t.Fatalf("worker id %q", id)
	}
	resp, err := http.Get("http://127.0.0.1:" + port[1] + wire.PathModels)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the hive's worker without the token: %d, want 401", resp.StatusCode)
	}
}
