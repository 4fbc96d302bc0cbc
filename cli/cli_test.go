package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// run runs one short beekeeper command to its end and returns its output.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.Binary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("beekeeper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// psLine returns the `beekeeper ps` line of id.
func psLine(t *testing.T, id string) string {
	t.Helper()
	for _, line := range strings.Split(run(t, "ps"), "\n") {
		if strings.HasPrefix(line, id+" ") {
			return line
		}
	}
	t.Fatalf("beekeeper ps does not list %s", id)
	return ""
}

// TestHeadlessHiveWorkersBeforeQueen drives the headless commands as a user would, in
// the seed's Flow 1 order: spawn with a Queen that is not up yet, then start the Queen;
// the worker appears there online, ps shows it, logs show it, stop removes it.
func TestHeadlessHiveWorkersBeforeQueen(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir()) // the children inherit it
	queenAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	queenURL := "http://" + queenAddr
	port := testenv.FreePort(t)
	id := wire.WorkerID(wire.DefaultWorkerType, wire.DefaultHost, port)

	out := run(t, "spawn", "--model", testenv.Model(t), "--port", strconv.Itoa(port), "--queen", queenURL)
	if !strings.Contains(out, id) || !strings.Contains(out, "pending") {
		t.Fatalf("spawn said %q, want %s pending (no Queen yet)", out, id)
	}
	t.Cleanup(func() { _, _ = exec.Command(testenv.Binary(t), "stop", id).CombinedOutput() })
	if line := psLine(t, id); !strings.Contains(line, "ready") || !strings.Contains(line, "pending") {
		t.Fatalf("ps line %q, want ready and pending", line)
	}

	q := testenv.StartProcess(t, "queen", "--addr", queenAddr, "--heartbeat-interval", "300ms")
	t.Cleanup(func() { q.Stop(5 * time.Second) })
	testenv.WaitFor(t, "the worker online at the Queen", 10*time.Second, func() bool {
		resp, err := http.Get(queenURL + wire.PathWorkers + "/" + id)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var w wire.Worker
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&w) == nil && w.State == wire.StateOnline
	})
	if line := psLine(t, id); !strings.Contains(line, "online") {
		t.Fatalf("ps line %q, want the Queen's live state online", line)
	}
	if logs := run(t, "logs", id); !strings.Contains(logs, "msg=ready") {
		t.Fatalf("logs of %s lack the ready line:\n%s", id, logs)
	}

	run(t, "stop", id)
	if line := psLine(t, id); !strings.Contains(line, "exited") {
		t.Fatalf("ps line after stop %q, want exited", line)
	}
	testenv.WaitFor(t, "the Queen to forget the stopped worker", 5*time.Second, func() bool {
		resp, err := http.Get(queenURL + wire.PathWorkers + "/" + id)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNotFound
	})
}
