package hive

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

func median(d []time.Duration) float64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[len(d)/2].Microseconds()) / 1000
}

// BenchmarkSpawnToReady: process start to /health 200 and /capabilities checked.
func BenchmarkSpawnToReady(b *testing.B) {
	h := openHive(b, b.TempDir(), "")
	defer h.Close(true)
	model := testenv.Model(b)
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		e, err := h.Spawn(context.Background(), SpawnRequest{ModelPath: model}, nil)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		if err := h.Stop(context.Background(), e.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(median(took), "median-ms")
}

// BenchmarkRegistrationToOnline: a worker spawned with the mini Queen set; from the
// fast-path registration (Spawn returns after it) until the Queen lists it online.
func BenchmarkRegistrationToOnline(b *testing.B) {
	q := startQueen(b)
	h := openHive(b, b.TempDir(), q.URL())
	defer h.Close(true)
	var took []time.Duration
	for b.Loop() {
		e := spawn(b, h)
		took = append(took, waitQueenView(b, q.URL(), []string{e.ID}, 2*time.Second))
		b.StopTimer()
		if err := h.Stop(context.Background(), e.ID); err != nil {
			b.Fatal(err)
		}
		waitQueenViewOff(b, q.URL(), e.ID)
		b.StartTimer()
	}
	b.ReportMetric(median(took), "median-ms")
}

// BenchmarkQueenAfterThreeWorkers: three workers run Queenless; the Queen starts; time
// until all three are online there.
func BenchmarkQueenAfterThreeWorkers(b *testing.B) {
	q := startQueen(b)
	addr := q.addr
	h := openHive(b, b.TempDir(), q.URL())
	defer h.Close(true)
	es := []Entry{spawn(b, h), spawn(b, h), spawn(b, h)}
	var took []time.Duration
	for b.Loop() {
		q.stop()
		q = startQueenAt(b, addr)
		took = append(took, waitQueenView(b, q.URL(), ids(es...), time.Second))
	}
	b.ReportMetric(median(took), "median-ms")
}

// BenchmarkQueenRestart: time from a restarted Queen's first answer until every worker
// is online again (target: one heartbeat interval + 100 ms).
func BenchmarkQueenRestart(b *testing.B) {
	q := startQueen(b)
	h := openHive(b, b.TempDir(), q.URL())
	defer h.Close(true)
	es := []Entry{spawn(b, h), spawn(b, h), spawn(b, h)}
	waitQueenView(b, q.URL(), ids(es...), 2*time.Second)
	var took []time.Duration
	for b.Loop() {
		q.stop()
		q = startQueenAt(b, q.addr)
		took = append(took, waitQueenView(b, q.URL(), ids(es...), testHeartbeat+100*time.Millisecond))
	}
	b.ReportMetric(median(took), "median-ms")
	b.ReportMetric(float64(testHeartbeat.Milliseconds()), "heartbeat-ms")
}

func waitQueenViewOff(b *testing.B, url, id string) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ws, err := queenWorkers(url)
		if err == nil {
			found := false
			for _, w := range ws {
				found = found || w.WorkerID == id
			}
			if !found {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%s still listed at %s", id, url)
}

// BenchmarkOrderToOnline: a spawn order posted at the Queen (docs/protocol.md §4.7) until the
// hive that took it has its worker online there; the hive long-polls, so this is the
// whole path: poll wake-up, claim, spawn, registration, report.
func BenchmarkOrderToOnline(b *testing.B) {
	q, c := startOrderQueen(b, 30*time.Second)
	h := openOrderHive(b, q.URL(), "hive-bench", true)
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		o := order(b, c, "")
		done := waitOrdersDone(b, c, []string{o.OrderID}, 30*time.Second)[0]
		waitQueenView(b, q.URL(), []string{done.WorkerID}, 5*time.Second)
		took = append(took, time.Since(start))
		b.StopTimer()
		if err := h.Stop(context.Background(), done.WorkerID); err != nil {
			b.Fatal(err)
		}
		waitQueenViewOff(b, q.URL(), done.WorkerID)
		b.StartTimer()
	}
	b.ReportMetric(median(took), "median-ms")
}
