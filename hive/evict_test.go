package hive

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// openBudgetHive is a hive named id for the given model files whose order workers are
// bounded to maxWorkers, waiting roomWait for a busy one before refusing.
func openBudgetHive(t testing.TB, queenURL, id string, maxWorkers int, roomWait time.Duration, paths ...string) *Hive {
	t.Helper()
	min, max := portRange(t)
	h, err := Open(Options{
		StateDir: t.TempDir(), PortMin: min, PortMax: max,
		WorkerBinary: testenv.Binary(t), QueenURL: queenURL, SyncInterval: time.Second,
		HiveID: id, MaxWorkers: maxWorkers, RoomWait: roomWait,
		ResolveModel: func(name string) (string, bool) {
			for _, p := range paths {
				if wire.ModelName(p) == name {
					return p, true
				}
			}
			return "", false
		},
		ListModels: func() []string { return paths },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(true) })
	return h
}

// slowModel is the 272M synthetic llama (generated once into the user's cache), linked
// into dir as name.gguf: its tokens take long enough on a CPU for a request to be
// caught in flight.
func slowModel(t *testing.T, dir, name string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	src, err := synthmodel.Cached(filepath.Join(cache, "beekeeper", "synth"), synthmodel.M272, testenv.Model(t))
	if err != nil {
		t.Fatalf("synthetic model: %v", err)
	}
	p := filepath.Join(dir, name+".gguf")
	if err := os.Symlink(src, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Eviction (issue 12): a hive with room for one worker gets a request for a second
// model. While the first worker has a request in flight it is not evicted: the order
// waits, then fails with no_room, which the Queen answers 503 with Retry-After. Once
// the first is idle, the next request for the second model evicts it and is served.
func TestLoadOnRequestEvictsTheIdleWorkerNeverABusyOne(t *testing.T) {
	q, c := startLoadQueen(t, 60*time.Second)
	dir := t.TempDir()
	big, small := slowModel(t, dir, "big"), modelCopy(t, dir, "small")
	h := openBudgetHive(t, q.URL(), "hive-one", 1, 1500*time.Millisecond, big, small)
	waitHiveReports(t, c, "hive-one")

	// A long streamed answer from "big" keeps its worker busy.
	body, _ := json.Marshal(map[string]any{"model": "big", "prompt": "Once upon a time", "max_tokens": 400,
		"temperature": 0, "ignore_eos": true, "stream": true})
	resp, err := http.Post(q.URL()+wire.PathCompletions, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	bigWorker := ""
	for bigWorker == "" && sc.Scan() { // the worker names itself once the load is done
		if id, ok := strings.CutPrefix(sc.Text(), ": worker "); ok {
			bigWorker = id
		}
	}
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: {") { // its first token
	}
	if bigWorker == "" {
		t.Fatal("the stream for big never named its worker")
	}

	busy := complete(q.URL(), "small", false)
	if busy.status != http.StatusServiceUnavailable || !strings.Contains(busy.body, wire.CodeNoRoom) {
		t.Fatalf("request for small while big's worker is busy: %d %s, want 503 %s", busy.status, busy.body, wire.CodeNoRoom)
	}
	if servingModel(h, "big") != bigWorker {
		t.Fatalf("the busy worker %s was evicted", bigWorker)
	}
	if ra := busy.retryAfter; ra != "5" {
		t.Errorf("Retry-After %q, want 5", ra)
	}
	tokens := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: {") {
			tokens++
		}
	}
	if tokens < 300 {
		t.Fatalf("the busy worker's stream ended after %d more chunks: it was cut", tokens)
	}

	served := complete(q.URL(), "small", false)
	if served.status != http.StatusOK {
		t.Fatalf("request for small once big's worker is idle: %d %s", served.status, served.body)
	}
	// Worker ids follow ports, and small's worker may take the port big's left.
	testenv.WaitFor(t, "big's worker stopped", 10*time.Second, func() bool { return servingModel(h, "big") == "" })
	ws, _ := c.List(context.Background())
	for _, w := range ws {
		if w.Model == "big" && w.State == wire.StateOnline {
			t.Fatalf("the evicted worker %s is still online at the Queen", w.WorkerID)
		}
	}
}

// servingModel is the id of a live worker of h serving model, "" if none.
func servingModel(h *Hive, model string) string {
	for _, e := range h.List() {
		if e.State.Live() && e.Model == model {
			return e.ID
		}
	}
	return ""
}

// The memory budget: MaxMemory bounds the workers' estimates together, and 10% of RAM
// stays free whatever it says; the report carries what is left.
func TestBudgetRoom(t *testing.T) {
	min, max := portRange(t)
	h, err := Open(Options{StateDir: t.TempDir(), PortMin: min, PortMax: max, WorkerBinary: testenv.Binary(t),
		MaxMemory: 64 << 20, Passive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(false)
	if r := h.roomFor(32 << 20); !r.ok || r.budget != 64<<20 {
		t.Fatalf("32 MiB in an empty 64 MiB budget: %+v", r)
	}
	if r := h.roomFor(65 << 20); r.ok || !strings.Contains(r.why, "needs about 65 MiB") {
		t.Fatalf("65 MiB in a 64 MiB budget: %+v", r)
	}
	h.opts.MaxMemory = 0
	if r := h.roomFor(1 << 50); r.ok || r.budget == ^uint64(0) {
		t.Fatalf("1 PiB with no budget but the machine's RAM: %+v", r)
	}
}
