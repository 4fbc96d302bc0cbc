package worker_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// queenPeer plays the Queen's worker-facing endpoints over real HTTP: it forgets every
// worker when it starts (as a restarted mini Queen does), answers unknown heartbeats with
// 404 unknown_worker, and records what the worker sent.
type queenPeer struct {
	t        *testing.T
	addr     string
	token    string
	interval time.Duration
	srv      *httptest.Server
	onDelete func(*http.Request) // if set, runs in the DELETE handler after recording

	mu         sync.Mutex
	known      map[string]bool
	registered []wire.RegisterRequest
	beats      []wire.Heartbeat
	deleted    []string
	deleteKeys []string // the identity key each DELETE carried
	badAuth    int
	held       map[string]bool // ids held under another identity key: 409 for them
}

// setHeld makes the peer refuse id as a Queen refuses an id bound to another worker's
// key (a killed predecessor's record), or stops refusing it.
func (q *queenPeer) setHeld(id string, held bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.held == nil {
		q.held = map[string]bool{}
	}
	q.held[id] = held
}

// refuseHeld answers 409 worker_key_mismatch for a held id.
func (q *queenPeer) refuseHeld(w http.ResponseWriter, id string) bool {
	q.mu.Lock()
	held := q.held[id]
	q.mu.Unlock()
	if held {
		wire.WriteError(w, wire.NewError(http.StatusConflict, wire.CodeWorkerKeyMismatch, "worker_id %q is bound to another worker process's identity key", id))
	}
	return held
}

func newQueenPeer(t *testing.T, token string) *queenPeer {
	q := &queenPeer{t: t, token: token, interval: 200 * time.Millisecond}
	q.start("127.0.0.1:0")
	t.Cleanup(q.stop)
	return q
}

func (q *queenPeer) url() string { return "http://" + q.addr }

// start listens on addr (the same address again after stop: the Queen came back).
func (q *queenPeer) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		q.t.Fatalf("queen peer listen: %v", err)
	}
	q.addr = ln.Addr().String()
	q.mu.Lock()
	q.known = map[string]bool{} // a fresh Queen knows nobody
	q.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathRegisterWorker, func(w http.ResponseWriter, r *http.Request) {
		var req wire.RegisterRequest
		if !q.auth(w, r) || !q.decode(w, r, &req) || q.refuseHeld(w, req.WorkerID) {
			return
		}
		q.mu.Lock()
		q.known[req.WorkerID] = true
		q.registered = append(q.registered, req)
		q.mu.Unlock()
		wire.WriteJSON(w, 200, wire.RegisterResponse{WorkerID: req.WorkerID, State: wire.StateRegistered, HeartbeatIntervalMS: q.interval.Milliseconds()})
	})
	mux.HandleFunc("POST "+wire.PathHeartbeat, func(w http.ResponseWriter, r *http.Request) {
		var hb wire.Heartbeat
		if !q.auth(w, r) || !q.decode(w, r, &hb) || q.refuseHeld(w, hb.WorkerID) {
			return
		}
		q.mu.Lock()
		known := q.known[hb.WorkerID]
		if known {
			q.beats = append(q.beats, hb)
		}
		q.mu.Unlock()
		if !known {
			wire.WriteError(w, wire.NewError(404, wire.CodeUnknownWorker, "unknown worker %s", hb.WorkerID))
			return
		}
		wire.WriteJSON(w, 200, wire.HeartbeatResponse{HeartbeatIntervalMS: q.interval.Milliseconds()})
	})
	mux.HandleFunc("DELETE "+wire.PathWorkers+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !q.auth(w, r) {
			return
		}
		q.mu.Lock()
		q.deleted = append(q.deleted, r.PathValue("id"))
		q.deleteKeys = append(q.deleteKeys, r.Header.Get(wire.HeaderWorkerKey))
		q.mu.Unlock()
		if q.onDelete != nil {
			q.onDelete(r)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	q.srv = httptest.NewUnstartedServer(mux)
	q.srv.Listener = ln
	q.srv.Start()
}

func (q *queenPeer) stop() { q.srv.Close() }

func (q *queenPeer) auth(w http.ResponseWriter, r *http.Request) bool {
	if q.token != "" && r.Header.Get("Authorization") != wire.BearerPrefix+q.token {
		q.mu.Lock()
		q.badAuth++
		q.mu.Unlock()
		wire.WriteError(w, wire.NewError(401, wire.CodeUnauthorized, "bad token"))
		return false
	}
	return true
}

func (q *queenPeer) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		wire.WriteError(w, wire.NewError(400, wire.CodeInvalidJSON, "%v", err))
		return false
	}
	return true
}

// snapshot returns how many registrations and heartbeats arrived so far.
func (q *queenPeer) snapshot() (regs, beats int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.registered), len(q.beats)
}

// TestHeartbeatAdoptionAndSelfRegistration: a Queenless worker is adopted through
// POST /adopt with its token, finds itself unknown (404), self-registers with the
// spawner's payload and its identity key, heartbeats at the Queen's interval with the
// token and the key, and says goodbye (with the key) on SIGTERM.
func TestHeartbeatAdoptionAndSelfRegistration(t *testing.T) {
	q := newQueenPeer(t, "tok")
	// Started for a spawn order: the self-registration names it (docs/protocol.md §4.7).
	w := testenv.StartWorker(t, "--api-token", "tok", "--spawned-by", "gui", "--spawn-order", "order-test1")
	if regs, beats := q.snapshot(); regs != 0 || beats != 0 {
		t.Fatalf("a Queenless worker sent %d registrations, %d heartbeats", regs, beats)
	}

	status, body := post(t, w.URL+wire.PathAdopt, wire.AdoptRequest{QueenURL: q.url()}, "Authorization", "Bearer tok")
	if status != http.StatusOK {
		t.Fatalf("adopt: %d %s", status, body)
	}
	caps := decode[wire.Capabilities](t, body)
	if caps.QueenURL != q.url() {
		t.Fatalf("capabilities queen_url %q, want %q", caps.QueenURL, q.url())
	}

	// 200 ms interval: five heartbeats arrive within a few seconds.
	start := time.Now()
	testenv.WaitFor(t, "five heartbeats", 10*time.Second, func() bool { _, beats := q.snapshot(); return beats >= 5 })
	elapsed := time.Since(start)
	q.mu.Lock()
	reg := q.registered[0]
	hb := q.beats[0]
	badAuth := q.badAuth
	q.mu.Unlock()
	key := reg.WorkerKey
	want := wire.RegisterRequest{WorkerID: caps.WorkerID, Hostname: "127.0.0.1", Port: w.Port, WorkerType: "llm", Model: "stories260K", SpawnedBy: "gui", SpawnOrderID: "order-test1", WorkerKey: key}
	if reg != want || len(key) < 32 {
		t.Fatalf("self-registration %+v, want %+v with an identity key", reg, want)
	}
	if hb.WorkerID != caps.WorkerID || hb.Status != wire.StatusReady || hb.Slots != 1 || badAuth != 0 || hb.WorkerKey != key {
		t.Fatalf("heartbeat %+v, bad auth %d; want the registration's key", hb, badAuth)
	}
	if elapsed < 600*time.Millisecond { // 4 intervals between 5 beats, minus jitter-free slack
		t.Fatalf("5 heartbeats in %s: the Queen's 200 ms interval was not followed", elapsed)
	}

	w.Signal(syscall.SIGTERM)
	if code := w.Wait(5 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.deleted) != 1 || q.deleted[0] != caps.WorkerID || q.deleteKeys[0] != key {
		t.Fatalf("deregistrations %v with keys %v, want [%s] with the worker's key", q.deleted, q.deleteKeys, caps.WorkerID)
	}
}

// TestHeartbeatQueenDown: with --queen-url, the first heartbeat follows readiness; a
// Queen that goes away leaves the worker serving; when it comes back (having forgotten
// everything), the worker registers itself again and resumes heartbeats.
func TestHeartbeatQueenDown(t *testing.T) {
	q := newQueenPeer(t, "")
	w := testenv.StartWorker(t, "--queen-url", q.url())
	testenv.WaitFor(t, "registration and heartbeats", 10*time.Second, func() bool {
		regs, beats := q.snapshot()
		return regs == 1 && beats >= 2
	})

	q.stop()
	w.WaitOutput("queen unreachable", 10*time.Second)
	status, body := post(t, w.URL+wire.PathCompletions, map[string]any{"prompt": storyPrompt, "max_tokens": 5})
	if status != 200 {
		t.Fatalf("worker stopped serving without its Queen: %d %s", status, body)
	}

	regsBefore, beatsBefore := q.snapshot()
	q.start(q.addr)
	testenv.WaitFor(t, "re-registration after the Queen returned", 40*time.Second, func() bool {
		regs, beats := q.snapshot()
		return regs == regsBefore+1 && beats >= beatsBefore+2
	})
	w.WaitOutput("queen reachable again", 5*time.Second)
}

// TestHeartbeatMovesToNewQueen: a worker adopted by a second Queen heartbeats only to
// the second from then on, and deletes nothing at the first (the first ages it out).
func TestHeartbeatMovesToNewQueen(t *testing.T) {
	first, second := newQueenPeer(t, ""), newQueenPeer(t, "")
	w := testenv.StartWorker(t, "--queen-url", first.url())
	testenv.WaitFor(t, "heartbeats at the first queen", 10*time.Second, func() bool { _, beats := first.snapshot(); return beats >= 1 })

	adopt(t, w.URL, second.url())
	// One sender sends in order: once the second Queen has a heartbeat, none is on its
	// way to the first any more.
	testenv.WaitFor(t, "heartbeats at the second queen", 5*time.Second, func() bool { _, beats := second.snapshot(); return beats >= 1 })
	_, before := first.snapshot()
	_, after2 := second.snapshot()
	testenv.WaitFor(t, "more heartbeats at the second queen", 5*time.Second, func() bool { _, beats := second.snapshot(); return beats >= after2+3 })
	if _, now := first.snapshot(); now != before {
		t.Fatalf("the first queen still got heartbeats after the move: %d -> %d", before, now)
	}
	first.mu.Lock()
	defer first.mu.Unlock()
	if len(first.deleted) != 0 {
		t.Fatalf("the worker deleted itself at the queen it left: %v", first.deleted)
	}
}

// TestHeartbeatSameQueenOtherSpellingNoDelete guards against a worker deleting itself at
// its own Queen: adopted under another URL of the same Queen (localhost vs 127.0.0.1),
// it sends no DELETE, needs no second registration and keeps heartbeating.
func TestHeartbeatSameQueenOtherSpellingNoDelete(t *testing.T) {
	q := newQueenPeer(t, "")
	w := testenv.StartWorker(t, "--queen-url", q.url())
	testenv.WaitFor(t, "registration and a heartbeat", 10*time.Second, func() bool {
		regs, beats := q.snapshot()
		return regs == 1 && beats >= 1
	})

	_, port, _ := net.SplitHostPort(q.addr)
	adopt(t, w.URL, "http://localhost:"+port)
	_, before := q.snapshot()
	testenv.WaitFor(t, "heartbeats under the new spelling", 5*time.Second, func() bool { _, beats := q.snapshot(); return beats >= before+3 })
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.deleted) != 0 || len(q.registered) != 1 {
		t.Fatalf("deletes %v and %d registrations, want none and 1", q.deleted, len(q.registered))
	}
}

// adopt makes queenURL the worker's Queen through POST /adopt, sent from this machine
// (the named Queen's address).
func adopt(t *testing.T, workerURL, queenURL string) {
	t.Helper()
	if status, body := post(t, workerURL+wire.PathAdopt, wire.AdoptRequest{QueenURL: queenURL}); status != http.StatusOK {
		t.Fatalf("adopt %s: %d %s", queenURL, status, body)
	}
}

// blackhole is a TCP proxy to a Queen that can be cut the way a pulled cable cuts a
// link: while cut, bytes vanish in both directions and nothing is closed, and every
// connection that carried (or was opened during) the cut stays dead after the heal, as
// one waiting on TCP's backed-off retransmissions does. New connections after the heal
// work.
type blackhole struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	dead   map[net.Conn]bool
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target, dead: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close() })
	go b.accept()
	return b
}

func (b *blackhole) url() string { return "http://" + b.ln.Addr().String() }

func (b *blackhole) setCut(cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut = cut
}

// alive reports whether c may carry bytes now; a cut kills it for good.
func (b *blackhole) alive(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		b.dead[c] = true
	}
	return !b.dead[c]
}

func (b *blackhole) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", b.target)
		if err != nil {
			c.Close()
			continue
		}
		go b.pipe(c, up, c)
		go b.pipe(up, c, c)
	}
}

// pipe copies from src to dst while the connection (keyed by its client side) lives.
func (b *blackhole) pipe(dst, src, key net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && b.alive(key) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestHeartbeatBackOnlineWithinAnIntervalOfTheHeal: a silent cut (packets dropped, no
// reset) leaves the heartbeat in flight hanging; the worker does not wait for it (5 s)
// or back off to seconds, but tries again on new connections, so the first heartbeat
// after the heal arrives within about one interval (200 ms here).
func TestHeartbeatBackOnlineWithinAnIntervalOfTheHeal(t *testing.T) {
	q := newQueenPeer(t, "")
	hole := newBlackhole(t, q.addr)
	w := testenv.StartWorker(t, "--queen-url", hole.url())
	testenv.WaitFor(t, "registration and heartbeats", 10*time.Second, func() bool {
		regs, beats := q.snapshot()
		return regs == 1 && beats >= 2
	})
	for round := range 3 {
		hole.setCut(true)
		time.Sleep(time.Duration(900+round*700) * time.Millisecond)
		_, before := q.snapshot()
		hole.setCut(false)
		healed := time.Now()
		testenv.WaitFor(t, "a heartbeat after the heal", 10*time.Second, func() bool { _, beats := q.snapshot(); return beats > before })
		// The worker retries every 0.7 interval (±10%); the bound leaves room for a
		// loaded machine and still fails the old 5 s wait plus backoff.
		if late := time.Since(healed); late > 600*time.Millisecond {
			t.Fatalf("round %d: first heartbeat %v after the heal, want within about one interval", round, late)
		} else {
			t.Logf("round %d: first heartbeat %v after the heal", round, late)
		}
	}
	w.WaitOutput("queen reachable again", 5*time.Second)
}

// TestHeartbeatRefusedIdRetriedSoon: a worker started on the port of a killed one has
// its id, and the Queen refuses it (the id is bound to the dead worker's key) until the
// dead worker's hive withdraws that record, a moment later. The worker does not know
// the Queen's interval yet (no beat has succeeded), so it must not wait its 5 s default:
// it retries from 100 ms, backing off, and is registered within a second of the
// withdrawal.
func TestHeartbeatRefusedIdRetriedSoon(t *testing.T) {
	q := newQueenPeer(t, "")
	const id = "worker-llm-successor"
	q.setHeld(id, true)
	w := testenv.StartWorker(t, "--queen-url", q.url(), "--worker-id", id)
	w.WaitOutput("the queen holds this worker id under another identity key", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	q.setHeld(id, false)
	withdrawn := time.Now()
	testenv.WaitFor(t, "the successor registered", 10*time.Second, func() bool { regs, beats := q.snapshot(); return regs >= 1 && beats >= 1 })
	// The old wait was the default interval, 5 s; the bound leaves room for a loaded machine.
	if took := time.Since(withdrawn); took > time.Second {
		t.Fatalf("registered %v after the withdrawal, want within a second", took)
	} else {
		t.Logf("registered %v after the withdrawal", took)
	}
}
