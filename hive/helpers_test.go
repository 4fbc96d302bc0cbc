package hive

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

const testHeartbeat = 500 * time.Millisecond

// testQueen is a real mini Queen served in-process on a fixed loopback port, so it can
// be stopped and started again on the same address.
type testQueen struct {
	addr string
	stop func()
}

func (q *testQueen) URL() string { return "http://" + q.addr }

func startQueenAt(t testing.TB, addr string) *testQueen {
	t.Helper()
	qn, err := queen.New(queen.Config{Addr: addr, HeartbeatInterval: testHeartbeat})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for { // a just-closed listener's port may take a moment to be free again
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("queen listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = qn.Serve(ctx, ln) }()
	q := &testQueen{addr: ln.Addr().String()}
	stopped := false
	q.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(q.stop)
	return q
}

func startQueen(t testing.TB) *testQueen {
	return startQueenAt(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
}

// portRange is a private range of ports for one test, away from the defaults.
func portRange(t testing.TB) (int, int) {
	base := testenv.FreePort(t)
	if base > 65000 {
		base = 40000 + base%1000
	}
	return base, base + 30
}

func openHive(t testing.TB, state, queenURL string) *Hive {
	t.Helper()
	min, max := portRange(t)
	h, err := Open(Options{
		StateDir:     state,
		PortMin:      min,
		PortMax:      max,
		WorkerBinary: testenv.Binary(t),
		QueenURL:     queenURL,
		SyncInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func spawn(t testing.TB, h *Hive) Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := h.Spawn(ctx, SpawnRequest{ModelPath: testenv.Model(t), RegisterWithQueen: true}, nil)
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	return e
}

func queenWorkers(url string) ([]wire.Worker, error) {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url + wire.PathWorkers)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l wire.WorkerList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, err
	}
	return l.Workers, nil
}

// waitQueenView polls the Queen until it lists exactly ids, each once and online, and
// returns how long that took.
func waitQueenView(t testing.TB, queenURL string, ids []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	want := append([]string(nil), ids...)
	sort.Strings(want)
	var last string
	for time.Since(start) < within {
		ws, err := queenWorkers(queenURL)
		if err == nil {
			got := make([]string, 0, len(ws))
			online := true
			for _, w := range ws {
				got = append(got, w.WorkerID)
				online = online && w.State == wire.StateOnline
			}
			sort.Strings(got)
			if online && strings.Join(got, ",") == strings.Join(want, ",") {
				return time.Since(start)
			}
			last = fmt.Sprintf("%v", ws)
		} else {
			last = err.Error()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("queen view did not converge to %v within %v; last: %s", want, within, last)
	return 0
}

// waitEntry polls the hive until cond holds for the entry.
func waitEntry(t testing.TB, h *Hive, id string, within time.Duration, cond func(Entry) bool) Entry {
	t.Helper()
	deadline := time.Now().Add(within)
	var e Entry
	for time.Now().Before(deadline) {
		var ok bool
		if e, ok = h.Get(id); ok && cond(e) {
			return e
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("entry %s did not reach the expected state within %v; last: %+v", id, within, e)
	return e
}

func ids(es ...Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func fmtSscanf(s string, min, max *int) (int, error) { return fmt.Sscanf(s, "%d-%d", min, max) }
