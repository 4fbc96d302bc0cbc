package hive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Cold start through the Queen (issue 12): a streamed request for a model no worker
// serves, to its first token, with a real Queen (in this process, reaching only
// loopback), a real `beekeeper hive` process with the model in its --models folder and
// the worker that hive spawns; against the same `beekeeper worker` started directly on
// the same file, in the same round. Every moment is observed from outside the product:
//
//   - the client's own clock: request sent, ": loading" comment (the request is held and
//     its order placed), ": worker <id>" comment (the held request is routed), first
//     text chunk;
//   - the hive's log line "spawn order taken", stamped as it arrives on the pipe;
//   - the worker's own log lines "listening" (process up, port bound) and "ready" (model
//     loaded), with the millisecond timestamps slog writes into the worker's log file;
//   - the Queen's registry events "registered" and "online", with their times.

const coldModel = "coldstart" // the test model, copied under this name

// stampedLine is one output line and when it arrived.
type stampedLine struct {
	at   time.Time
	text string
}

// stampedLog is a process's output, line by line, each stamped on arrival.
type stampedLog struct {
	mu    sync.Mutex
	part  []byte
	lines []stampedLine
	grew  chan struct{} // closed and replaced when a line arrives
}

func newStampedLog() *stampedLog { return &stampedLog{grew: make(chan struct{})} }

func (s *stampedLog) Write(p []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part = append(s.part, p...)
	added := false
	for {
		i := bytes.IndexByte(s.part, '\n')
		if i < 0 {
			break
		}
		s.lines = append(s.lines, stampedLine{at: now, text: string(s.part[:i])})
		s.part = s.part[i+1:]
		added = true
	}
	if added {
		close(s.grew)
		s.grew = make(chan struct{})
	}
	return len(p), nil
}

// wait returns the first line at index ≥ from that contains substr, and its index.
func (s *stampedLog) wait(tb testing.TB, from int, substr string, timeout time.Duration) (stampedLine, int) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for i := from; i < len(s.lines); i++ {
			if strings.Contains(s.lines[i].text, substr) {
				l := s.lines[i]
				s.mu.Unlock()
				return l, i
			}
		}
		from = len(s.lines)
		grew := s.grew
		s.mu.Unlock()
		select {
		case <-grew:
		case <-deadline.C:
			tb.Fatalf("no output line with %q within %v:\n%s", substr, timeout, s.String())
		}
	}
}

func (s *stampedLog) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

func (s *stampedLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.lines {
		fmt.Fprintf(&b, "%s  %s\n", l.at.Format("15:04:05.000000"), l.text)
	}
	return b.String() + string(s.part)
}

// startStamped runs `beekeeper ARGS...` with its output stamped line by line; it is
// killed when the benchmark ends.
func startStamped(tb testing.TB, args ...string) (*exec.Cmd, *stampedLog) {
	tb.Helper()
	out := newStampedLog()
	cmd := exec.Command(testenv.Binary(tb), args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start beekeeper %s: %v", strings.Join(args, " "), err)
	}
	exited := make(chan struct{})
	go func() { defer close(exited); _ = cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("output of beekeeper %s:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return cmd, out
}

// eventLog keeps the Queen's registry events with the Queen's own times.
type eventLog struct {
	mu     sync.Mutex
	events []wire.Event
	grew   chan struct{}
}

func watchQueen(tb testing.TB, qn *queen.Queen) *eventLog {
	_, ch, cancel := qn.Subscribe()
	tb.Cleanup(cancel)
	l := &eventLog{grew: make(chan struct{})}
	go func() { // ends when cancel closes ch
		for ev := range ch {
			l.mu.Lock()
			l.events = append(l.events, ev)
			close(l.grew)
			l.grew = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// at is when the Queen published typ for worker id, not before since.
func (l *eventLog) at(typ, id string, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.events {
		if ev.Type == typ && ev.Worker.WorkerID == id && !ev.At.Before(since) {
			return ev.At, true
		}
	}
	return time.Time{}, false
}

// streamStamps is what the client saw of one streamed completion.
type streamStamps struct {
	held, routed, first, done time.Time
	worker                    string
}

// coldStream sends a streamed completion to base and stamps what arrives.
func coldStream(tb testing.TB, client *http.Client, base string) streamStamps {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"model": coldModel, "prompt": "Once upon a time", "max_tokens": 8,
		"temperature": 0, "stream": true})
	resp, err := client.Post(base+wire.PathCompletions, "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		tb.Fatalf("completion at %s: %d %s", base, resp.StatusCode, msg)
	}
	var s streamStamps
	s.worker = resp.Header.Get(queen.HeaderWorker)
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadString('\n')
		now := time.Now()
		if err != nil {
			tb.Fatalf("stream from %s ended before [DONE]: %v", base, err)
		}
		switch {
		case strings.HasPrefix(line, ": loading") && s.held.IsZero():
			s.held = now
		case strings.HasPrefix(line, ": worker "):
			s.routed, s.worker = now, strings.TrimSpace(strings.TrimPrefix(line, ": worker "))
		case strings.HasPrefix(line, "data: [DONE]"):
			s.done = now
			_, _ = io.Copy(io.Discard, rd)
			return s
		case strings.HasPrefix(line, "data: ") && s.first.IsZero() && strings.Contains(line, `"text":"`) && !strings.Contains(line, `"text":""`):
			s.first = now
		}
	}
}

// workerLogTimes reads the moments a worker logged "listening" and "ready" (and its
// own load_ms) from the last start in its log file: slog writes millisecond times.
func workerLogTimes(tb testing.TB, text string) (listening, ready time.Time, loadMS int) {
	tb.Helper()
	if i := strings.LastIndex(text, "=== "); i >= 0 {
		text = text[i:]
	}
	for _, line := range strings.Split(text, "\n") {
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		at, err := time.Parse("2006-01-02T15:04:05.000Z07:00", ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, " msg=listening ") && listening.IsZero():
			listening = at
		case strings.Contains(line, " msg=ready ") && ready.IsZero():
			ready = at
			if _, v, ok := strings.Cut(line, " load_ms="); ok {
				v, _, _ = strings.Cut(v, " ")
				loadMS, _ = strconv.Atoi(v)
			}
		}
	}
	if listening.IsZero() || ready.IsZero() {
		tb.Fatalf("worker log has no listening/ready lines:\n%s", text)
	}
	return listening, ready, loadMS
}

// coldRound is one round's moments, as durations from the request (cold) or the
// process start (direct).
type coldRound struct {
	// through the Queen, from the request
	held, taken, listening, ready, registered, online, routed, first time.Duration
	loadMS                                                           int
	// the worker started directly, from its start
	dListening, dReady, dFirst time.Duration
	dLoadMS                    int
}

// BenchmarkColdStart: request for an unloaded model → first token through the Queen,
// against `beekeeper worker` started directly until its first token, in the same round.
// Goal: under 150 ms above the worker's own. Run it with -benchtime Nx (N rounds).
//
// `beekeeper hive` picks its workers' ports from the default 8080..8200: another hive on
// the machine in that range (the chaos soak's, say) can take a port between the probe and
// the worker's bind, and the order then fails — the benchmark fails with it rather than
// measuring something else.
func BenchmarkColdStart(b *testing.B) {
	home := b.TempDir()
	b.Setenv("BEEKEEPER_HOME", home) // the hive process and `beekeeper stop` share it
	modelDir := b.TempDir()
	model := modelCopy(b, modelDir, coldModel)

	qn, err := queen.New(queen.Config{HeartbeatInterval: time.Second, Dial: new(testenv.LoopbackDialer).DialContext})
	if err != nil {
		b.Fatal(err)
	}
	events := watchQueen(b, qn)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = qn.Serve(ctx, ln) }()
	b.Cleanup(func() { cancel(); <-served })
	queenURL := "http://" + ln.Addr().String()
	qc, err := queenclient.New(queenURL, "", queenclient.Options{})
	if err != nil {
		b.Fatal(err)
	}

	_, hiveOut := startStamped(b, "hive", "--queen", queenURL, "--models", modelDir, "--id", "hive-bench")
	waitHiveReports(b, qc, "hive-bench")
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: new(testenv.LoopbackDialer).DialContext}}
	defer client.CloseIdleConnections()
	logs := filepath.Join(home, "state", "logs")

	ghosts, ghostLife := 0, time.Duration(0) // stopped workers registered again, and for how long
	cold := func() coldRound {
		from := hiveOut.len()
		t0 := time.Now()
		s := coldStream(b, client, queenURL)
		taken, _ := hiveOut.wait(b, from, "spawn order taken", 5*time.Second)
		hiveOut.wait(b, from, "spawn order done", 5*time.Second)
		if s.held.IsZero() || s.routed.IsZero() || s.first.IsZero() {
			b.Fatalf("the request was not held and routed: %+v", s)
		}
		logText, err := os.ReadFile(filepath.Join(logs, s.worker+".log"))
		if err != nil {
			b.Fatal(err)
		}
		listening, ready, loadMS := workerLogTimes(b, string(logText))
		registered, ok1 := events.at(wire.EventRegistered, s.worker, t0)
		online, ok2 := events.at(wire.EventOnline, s.worker, t0)
		if !ok1 || !ok2 {
			b.Fatalf("no registered/online events for %s at the Queen", s.worker)
		}
		// Unload with `beekeeper stop` (SIGTERM, deregistration), then wait until the
		// Queen holds no worker for the model, and still none 500 ms later: the next
		// request must find the model unloaded.
		stopAt := time.Now()
		if out, err := exec.Command(testenv.Binary(b), "stop", s.worker).CombinedOutput(); err != nil {
			b.Fatalf("beekeeper stop %s: %v\n%s", s.worker, err, out)
		}
		unloaded(b, qn)
		if life, ok := events.ghost(s.worker, stopAt); ok {
			ghosts++
			ghostLife = max(ghostLife, life)
		}
		return coldRound{
			held: s.held.Sub(t0), taken: taken.at.Sub(t0), listening: listening.Sub(t0), ready: ready.Sub(t0),
			registered: registered.Sub(t0), online: online.Sub(t0), routed: s.routed.Sub(t0), first: s.first.Sub(t0),
			loadMS: loadMS,
		}
	}
	direct := func(r *coldRound) {
		port := testenv.FreePort(b)
		out := newStampedLog()
		cmd := exec.Command(testenv.Binary(b), "worker", "--model", model, "--port", strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = out, out
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { // stopped before the next side starts, also when the round fails
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}()
		listening, _ := out.wait(b, 0, "msg=listening", 30*time.Second)
		ready, _ := out.wait(b, 0, "msg=ready", 30*time.Second)
		s := coldStream(b, client, fmt.Sprintf("http://127.0.0.1:%d", port))
		// The lines as they arrived on the pipe: the worker writes each at once.
		r.dListening, r.dReady, r.dFirst = listening.at.Sub(t0), ready.at.Sub(t0), s.first.Sub(t0)
		if _, v, ok := strings.Cut(ready.text, " load_ms="); ok {
			v, _, _ = strings.Cut(v, " ")
			r.dLoadMS, _ = strconv.Atoi(v)
		}
	}

	// One untimed round each: libraries, model file and connections warm.
	warm := cold()
	direct(&warm)
	ghosts, ghostLife = 0, 0

	var rounds []coldRound
	for b.Loop() {
		var r coldRound
		if len(rounds)%2 == 0 {
			r = cold()
			direct(&r)
		} else {
			direct(&r)
			c := cold()
			c.dListening, c.dReady, c.dFirst, c.dLoadMS = r.dListening, r.dReady, r.dFirst, r.dLoadMS
			r = c
		}
		rounds = append(rounds, r)
	}
	b.StopTimer()
	reportColdStart(b, rounds)
	b.ReportMetric(float64(ghosts), "ghosts")
	b.ReportMetric(msOf(ghostLife), "ghost_max_ms")
}

// unloaded waits until the Queen lists no worker serving coldModel for 500 ms in a row:
// the next request must find the model unloaded.
func unloaded(tb testing.TB, qn *queen.Queen) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var gone time.Time
	for time.Now().Before(deadline) {
		present := false
		for _, w := range qn.Workers() {
			present = present || w.Model == coldModel
		}
		switch {
		case present:
			gone = time.Time{}
		case gone.IsZero():
			gone = time.Now()
		case time.Since(gone) >= 500*time.Millisecond:
			return
		}
		time.Sleep(5 * time.Millisecond) // a poll of the Queen's list, not synchronisation
	}
	tb.Fatalf("the Queen still lists a worker for %s 15 s after the stop: %+v", coldModel, qn.Workers())
}

// ghost reports whether worker id was registered at the Queen again after it was
// stopped (since), and how long that registration lived: a held request for its model
// would wait for it instead of loading the model.
func (l *eventLog) ghost(id string, since time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var reg time.Time
	var life time.Duration
	found := false
	for _, ev := range l.events {
		if ev.Worker.WorkerID != id || ev.At.Before(since) {
			continue
		}
		switch ev.Type {
		case wire.EventRegistered:
			reg, found = ev.At, true
		case wire.EventRemoved:
			if !reg.IsZero() {
				life = max(life, ev.At.Sub(reg))
				reg = time.Time{}
			}
		}
	}
	return life, found
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportColdStart reports medians, and the overhead's spread, in milliseconds.
func reportColdStart(b *testing.B, rounds []coldRound) {
	med := func(f func(coldRound) time.Duration) float64 {
		v := make([]time.Duration, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		return msOf(v[len(v)/2])
	}
	// The overhead, and the overhead besides the model load itself: each side's load
	// (listening → ready, from the worker's own log) is the same code on the same file,
	// and on a shared machine it varies most from round to round.
	over := make([]time.Duration, len(rounds))
	overX := make([]time.Duration, len(rounds))
	for i, r := range rounds {
		over[i] = r.first - r.dFirst
		overX[i] = (r.first - (r.ready - r.listening)) - (r.dFirst - (r.dReady - r.dListening))
	}
	slices.Sort(over)
	slices.Sort(overX)
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.first }), "cold_ttft_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.dFirst }), "direct_ttft_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.dReady }), "direct_ready_ms")
	b.ReportMetric(msOf(over[len(over)/2]), "overhead_ms")
	b.ReportMetric(msOf(over[0]), "overhead_min_ms")
	b.ReportMetric(msOf(over[len(over)-1]), "overhead_max_ms")
	b.ReportMetric(msOf(overX[len(overX)/2]), "overhead_exload_ms")
	b.ReportMetric(msOf(overX[0]), "overhead_exload_min_ms")
	b.ReportMetric(msOf(overX[len(overX)-1]), "overhead_exload_max_ms")
	// The cold path's phases (medians of each round's phase).
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.held }), "held_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.taken }), "order_taken_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.listening - r.taken }), "spawn_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.ready - r.listening }), "load_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.online - r.ready }), "register_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.routed - r.online }), "route_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.first - r.routed }), "first_token_ms")
	// The direct worker's.
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.dListening }), "direct_spawn_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.dReady - r.dListening }), "direct_load_ms")
	b.ReportMetric(med(func(r coldRound) time.Duration { return r.dFirst - r.dReady }), "direct_first_token_ms")
	b.Logf("per round, ms from the request (cold) / process start (direct):")
	b.Logf("%5s %6s %6s %6s %6s %6s %6s %6s %6s %6s | %6s %6s %6s %6s | %6s",
		"round", "held", "taken", "listen", "ready", "regist", "online", "routed", "first", "loadms",
		"listen", "ready", "first", "loadms", "over")
	for i, r := range rounds {
		b.Logf("%5d %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6d | %6.1f %6.1f %6.1f %6d | %6.1f", i,
			msOf(r.held), msOf(r.taken), msOf(r.listening), msOf(r.ready), msOf(r.registered), msOf(r.online),
			msOf(r.routed), msOf(r.first), r.loadMS, msOf(r.dListening), msOf(r.dReady), msOf(r.dFirst), r.dLoadMS,
			msOf(r.first-r.dFirst))
	}
}
