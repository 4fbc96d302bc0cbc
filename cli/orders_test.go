package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// docs/protocol.md §4.7 from the command line, all real processes: a Queen, a headless hive with
// the model in its folder, and `beekeeper order`, which prints the worker that serves the
// order once it is online. The hive stopping leaves the worker running.
func TestHeadlessHiveServesAnOrder(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	folder := t.TempDir()
	if err := os.Symlink(testenv.Model(t), filepath.Join(folder, "stories260K.gguf")); err != nil {
		t.Fatal(err)
	}
	queenAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	queenURL := "http://" + queenAddr
	q := testenv.StartProcess(t, "queen", "--addr", queenAddr, "--heartbeat-interval", "300ms")
	t.Cleanup(func() { q.Stop(5 * time.Second) })
	q.WaitOutput("queen listening", 10*time.Second)

	h := testenv.StartProcess(t, "hive", "--queen", queenURL, "--models", folder, "--id", "hive-test")
	t.Cleanup(func() { h.Stop(5 * time.Second) })
	h.WaitOutput("serving Queen", 10*time.Second)

	start := time.Now()
	out, err := exec.Command(testenv.Binary(t), "order", "--queen", queenURL, "--model", "stories260K", "--wait", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("order: %v\n%s\nhive said:\n%s", err, out, h.Output())
	}
	m := regexp.MustCompile(`worker (\S+) serves stories260K on hive-test`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("order said:\n%s", out)
	}
	id := string(m[1])
	t.Cleanup(func() { _, _ = exec.Command(testenv.Binary(t), "stop", id).CombinedOutput() })
	t.Logf("order served in %v by %s", time.Since(start), id)

	testenv.WaitFor(t, "the ordered worker online at the Queen", 10*time.Second, func() bool {
		w, ok := queenWorker(queenURL, id)
		return ok && w.State == wire.StateOnline
	})
	if line := psLine(t, id); !strings.Contains(line, "ready") {
		t.Fatalf("ps line %q, want the ordered worker ready in the local registry", line)
	}

	h.Signal(syscall.SIGTERM)
	if code := h.Wait(10 * time.Second); code != 0 {
		t.Fatalf("hive exited %d on SIGTERM\n%s", code, h.Output())
	}
	if line := psLine(t, id); !strings.Contains(line, "ready") {
		t.Fatalf("after the hive stopped, ps line %q, want the worker still ready", line)
	}

	// An order for a model no hive has stays pending and says what to do.
	out, err = exec.Command(testenv.Binary(t), "order", "--queen", queenURL, "--model", "no-such-model", "--wait", "1s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no hive has taken it") {
		t.Fatalf("order of an unknown model: %v\n%s", err, out)
	}
}

func queenWorker(queenURL, id string) (wire.Worker, bool) {
	resp, err := http.Get(queenURL + wire.PathWorkers + "/" + id)
	if err != nil {
		return wire.Worker{}, false
	}
	defer resp.Body.Close()
	var w wire.Worker
	return w, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&w) == nil
}
