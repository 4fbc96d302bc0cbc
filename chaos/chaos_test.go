package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

var (
	flagSeed = flag.Int64("chaos.seed", 0, "fault schedule seed (0: 1 for the short run, random for the long one)")
	flagLong = flag.Duration("chaos.long", 0, "run the long soak for this long (e.g. 30m; needs -timeout above it)")
	flagKeep = flag.String("chaos.keep", "", "keep the processes' logs and state folders in this new folder (default: a test temp folder, removed)")
)

// shortFaults is how long the CI run injects faults (setup and checks come on top: about
// two minutes in all).
const shortFaults = 70 * time.Second

// Bounds of the invariants.
const (
	convergeBound  = heartbeat + 100*time.Millisecond // after a fault heals
	orphanScan     = 5 * time.Second                  // the hive's look for unrecorded workers
	startLimit     = 30 * time.Second                 // a start in progress longer than this is stuck
	convergeGiveUp = 30 * time.Second                 // no convergence at all: a violation
	requestLimit   = 45 * time.Second                 // a client request's deadline
)

// Fault kinds.
const (
	kQueenKill  = "queen-kill"
	kHiveKill   = "hive-kill"
	kWorkerKill = "worker-kill"
	kSpawnKill  = "spawn-kill"
	kCut        = "hive-cut"
	kSlow       = "link-slow"
	kReset      = "link-reset"
	kDiskFull   = "disk-full"
	kAppKill    = "app-kill"
)

var faultKinds = []string{kQueenKill, kHiveKill, kWorkerKill, kSpawnKill, kCut, kSlow, kReset, kDiskFull, kAppKill}

func TestChaos(t *testing.T) {
	requireNetns(t)
	seed, run := *flagSeed, shortFaults
	if *flagLong > 0 {
		run = *flagLong
		if seed == 0 {
			seed = time.Now().UnixNano()
		}
	} else if seed == 0 {
		seed = 1
	}
	s := &soak{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), long: *flagLong > 0, began: time.Now(), readySince: map[string]time.Time{},
		faults: map[string]int{}, skipped: map[string]string{}}
	t.Logf("chaos seed %d, faults for %s (replay: go test -run Chaos ./chaos/ -chaos.seed=%d%s)", seed, run, seed, s.longFlag())
	s.c = newCluster(t)
	t.Cleanup(s.report)
	s.run(run)
}

type order struct {
	id, model, hive string
	worker          string
	done            bool
	retired         string // why it is no longer checked (its worker was killed on purpose)
}

type convergence struct {
	kind string
	took time.Duration
}

type soak struct {
	t     *testing.T
	c     *cluster
	seed  int64
	rng   *rand.Rand
	long  bool
	began time.Time

	mu         sync.Mutex
	events     []string
	violations []string
	faults     map[string]int
	skipped    map[string]string
	conv       []convergence
	windows    [][2]time.Time // fault windows: inject .. converged
	orders     []*order
	nOrder     int
	readySince map[string]time.Time // "id/pid" -> when a look first saw it ready

	reqMu            sync.Mutex
	reqOK, reqFailed int
	reqFailures      []reqResult
}

func (s *soak) longFlag() string {
	if s.long {
		return fmt.Sprintf(" -chaos.long=%s -timeout %s", *flagLong, *flagLong+10*time.Minute)
	}
	return ""
}

func (s *soak) event(format string, args ...any) {
	line := fmt.Sprintf("%8.3fs ", time.Since(s.began).Seconds()) + fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.events = append(s.events, line)
	s.mu.Unlock()
	s.t.Log(line)
}

func (s *soak) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	s.mu.Unlock()
	s.event("VIOLATION %s", msg)
}

func (s *soak) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int63n(int64(hi-lo)+1))
}

func (s *soak) run(d time.Duration) {
	c := s.c
	// Every hive starts one worker by spawn order, and hive-c one of the second model.
	for _, h := range c.hives {
		s.placeOrder(modelNames[0], h.id)
	}
	s.placeOrder(modelNames[1], "hive-b")
	s.placeOrder(modelNames[1], "hive-c")
	s.checkOrders(true) // the first workers serve before the first fault
	if took, ok := s.converge(time.Now(), 60*time.Second, true); !ok {
		s.violation("the cluster never converged at start")
		return
	} else {
		s.event("converged at start in %v", took)
	}

	ctx, stop := context.WithCancel(context.Background())
	var clients sync.WaitGroup
	for i := range 2 {
		clients.Add(1)
		go func() { defer clients.Done(); s.client(ctx, i) }()
	}
	end := time.Now().Add(d)
	// The first faults are every kind once, in a seeded order, so that every run (the
	// short one too) has each; after them every fault's kind is drawn at random.
	first := append([]string(nil), faultKinds...)
	s.rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	for n := 1; time.Now().Before(end); n++ {
		var kind string
		if n <= len(first) {
			kind = first[n-1]
		} else {
			kind = faultKinds[s.rng.Intn(len(faultKinds))]
		}
		if kind == kSpawnKill && len(c.markedWorkers()) >= 8 {
			kind = kWorkerKill // keep the machine's worker count bounded
		}
		s.fault(n, kind)
		time.Sleep(s.dur(200*time.Millisecond, time.Second)) // between faults
	}
	stop()
	clients.Wait()
	if took, ok := s.converge(time.Now(), convergeGiveUp, true); !ok {
		s.violation("no convergence at the end")
	} else {
		s.event("converged at the end in %v", took)
	}
	s.checkOrders(true)
	s.checkApp()
}

// fault injects one fault, heals it, and waits for the cluster to converge.
func (s *soak) fault(n int, kind string) {
	c := s.c
	start := time.Now()
	h := c.hives[s.rng.Intn(len(c.hives))]
	bound := convergeBound
	var healed time.Time
	switch kind {
	case kQueenKill:
		down := s.dur(0, 1500*time.Millisecond)
		s.event("#%d %s: SIGKILL the Queen, restart after %v", n, kind, down)
		c.queen.kill()
		time.Sleep(down)
		c.startQueen()
		healed = time.Now()
	case kHiveKill:
		down := s.dur(0, 1500*time.Millisecond)
		s.event("#%d %s: SIGKILL %s, restart after %v", n, kind, h.id, down)
		h.proc.kill()
		time.Sleep(down)
		c.startHive(h)
		healed = time.Now()
	case kWorkerKill:
		ws := c.markedWorkers()
		if len(ws) == 0 {
			s.event("#%d %s: no worker running, skipped", n, kind)
			return
		}
		w := ws[s.rng.Intn(len(ws))]
		s.event("#%d %s: SIGKILL worker %s (pid %d) of %s; order a replacement", n, kind, w.id, w.pid, w.hive.id)
		_ = syscall.Kill(w.pid, syscall.SIGKILL)
		healed = time.Now()
		s.retireWorker(w.id)
		s.placeOrder(modelNames[s.rng.Intn(len(modelNames))], "")
	case kSpawnKill:
		after := s.dur(10*time.Millisecond, 60*time.Millisecond)
		s.event("#%d %s: `beekeeper spawn` on %s SIGKILLed %v into its start", n, kind, h.id, after)
		p := c.start("spawn", h.ns, c.hiveEnv(h), "spawn", "--model", c.models+"/"+modelNames[0]+".gguf", "--queen", h.queenURL)
		time.Sleep(after)
		p.kill()
		healed = time.Now()
		bound = orphanScan + convergeBound // the hive records what the spawn left within its look
	case kCut:
		var nsHives []*hiveNode
		for _, x := range c.hives {
			if x.ns != "" {
				nsHives = append(nsHives, x)
			}
		}
		h = nsHives[s.rng.Intn(len(nsHives))]
		hold := s.dur(time.Second, 15*time.Second)
		if !s.long {
			hold = s.dur(time.Second, 3*time.Second)
		}
		s.event("#%d %s: %s cut from the Queen (link down) for %v", n, kind, h.id, hold)
		if err := c.cut(h, true); err != nil {
			s.violation("cut %s: %v", h.id, err)
			return
		}
		time.Sleep(hold)
		if err := c.cut(h, false); err != nil {
			s.violation("heal %s: %v", h.id, err)
			return
		}
		healed = time.Now()
	case kSlow:
		lat, hold := s.dur(50*time.Millisecond, 800*time.Millisecond), s.dur(time.Second, 8*time.Second)
		s.event("#%d %s: hive-c's link to the Queen delayed %v per chunk for %v", n, kind, lat, hold)
		c.proxy.SetLatency(lat)
		time.Sleep(hold)
		c.proxy.SetLatency(0)
		healed = time.Now()
	case kReset:
		hold := s.dur(500*time.Millisecond, 4*time.Second)
		s.event("#%d %s: hive-c's link to the Queen resets every connection for %v", n, kind, hold)
		c.proxy.SetReset(true)
		time.Sleep(hold)
		c.proxy.SetReset(false)
		healed = time.Now()
	case kAppKill:
		down := s.dur(0, 1500*time.Millisecond)
		s.event("#%d %s: SIGKILL the app core, restart after %v", n, kind, down)
		c.app.proc.kill()
		time.Sleep(down)
		line := c.startApp()
		healed = time.Now()
		s.event("#%d %s", n, line)
		if !strings.Contains(line, "restored from the saved settings") {
			s.violation("#%d %s: the restarted app core did not bring its saved Queen back: %s", n, kind, line)
		}
	case kDiskFull:
		hc := c.hives[2]
		if !hc.tmpfs {
			s.skipped[kind] = "no tmpfs (mount failed)"
			s.event("#%d %s: skipped, hive-c's state is not on a tmpfs", n, kind)
			return
		}
		hold := s.dur(time.Second, 6*time.Second)
		s.event("#%d %s: hive-c's state tmpfs full for %v", n, kind, hold)
		if err := c.fill(hc); err != nil {
			s.violation("fill: %v", err)
			return
		}
		time.Sleep(hold)
		c.unfill(hc)
		healed = time.Now()
	}
	s.mu.Lock()
	s.faults[kind]++
	s.mu.Unlock()
	took, ok := s.converge(healed, convergeGiveUp, false)
	s.mu.Lock()
	s.windows = append(s.windows, [2]time.Time{start, time.Now()})
	if ok {
		s.conv = append(s.conv, convergence{kind, took})
	}
	s.mu.Unlock()
	switch {
	case !ok:
		s.violation("#%d %s: no convergence within %v of healing", n, kind, convergeGiveUp)
	case took > bound:
		s.violation("#%d %s: converged %v after healing, over the bound %v", n, kind, took.Round(time.Millisecond), bound)
	default:
		s.event("#%d converged %v after healing", n, took.Round(time.Millisecond))
	}
	// The next fault comes once the starts in progress (a replacement order's) are done,
	// as each did before starts were judged apart: faults never overlap a start.
	if _, ok := s.converge(time.Now(), convergeGiveUp, true); !ok {
		s.violation("#%d %s: not settled (starts in progress, or their workers not online) %v after the fault: see the event before", n, kind, convergeGiveUp)
	}
	s.checkOrders(false)
	s.checkApp()
}

// checkApp reports an app core that exited without being killed (it is started again),
// a data race its race detector reported (under `go test -race`), and a restart that
// took its own workers for another token's (the soak never changes the token).
func (s *soak) checkApp() {
	c := s.c
	if !c.app.proc.alive() {
		s.violation("the app core exited on its own:\n%s", tail(c.app.proc.output(), 4000))
		c.startApp()
	}
	for _, p := range c.appProcs {
		if p.said {
			continue
		}
		out := p.output()
		switch {
		case strings.Contains(out, "WARNING: DATA RACE"):
			p.said = true
			s.violation("data race in the app core (%s):\n%s", p.out, tail(out, 8000))
		case strings.Contains(out, "spawned with another API token"):
			p.said = true
			s.violation("the app core re-adopted its own worker as another token's (%s):\n%s", p.out, tail(out, 4000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// view is one look at the cluster: what the Queen holds online and what the hives record.
type view struct {
	problems []string // why it has not converged
	// newReady: every problem is a worker first seen ready after the time the look was
	// asked about, not yet online; readyAt is the latest such first sighting. Such a
	// worker's own onboarding is timed from then, not from the heal.
	newReady bool
	readyAt  time.Time
}

// look compares the Queen's online set with the live workers the hives' registries
// record, and every running marked worker with its registry.
func (s *soak) look(since time.Time, strict bool) view {
	c := s.c
	var v view
	ws, err := c.queenWorkers()
	if err != nil {
		v.problems = append(v.problems, "queen: "+err.Error())
		return v
	}
	online := map[string]bool{}
	for _, w := range ws {
		if w.State == wire.WorkerState("online") {
			online[w.WorkerID] = true
		}
	}
	newReady := 0
	recorded := map[string]string{} // id -> hive
	byPID := map[int]string{}
	starting := map[int]string{} // pid -> id of starts in progress
	for _, h := range c.nodes() {
		es, err := readRegistry(h)
		if err != nil {
			v.problems = append(v.problems, fmt.Sprintf("%s registry: %v", h.id, err))
			continue
		}
		for _, e := range es {
			switch e.State {
			case "starting":
				// A start whose starter runs is in progress: recorded, not live yet, and
				// not the fault's to settle (checkOrders follows it to the end). One
				// whose starter is gone (a killed spawn) is the hive's to take over.
				if !strict && alive(e.ClaimPID) && (e.PID == 0 || alive(e.PID)) && time.Since(e.StartedAt) < startLimit {
					starting[e.PID] = e.ID
					continue
				}
				v.problems = append(v.problems, fmt.Sprintf("%s: %s still starting", h.id, e.ID))
			case "ready", "stopping":
				if prev, ok := recorded[e.ID]; ok {
					v.problems = append(v.problems, fmt.Sprintf("DUP %s recorded live by %s and %s", e.ID, prev, h.id))
				}
				recorded[e.ID] = h.id
				if prev, ok := byPID[e.PID]; ok {
					v.problems = append(v.problems, fmt.Sprintf("DUP pid %d recorded as %s and %s", e.PID, prev, e.ID))
				}
				byPID[e.PID] = e.ID
				if syscall.Kill(e.PID, 0) != nil || zombie(e.PID) {
					v.problems = append(v.problems, fmt.Sprintf("%s: %s recorded live, pid %d gone", h.id, e.ID, e.PID))
				}
				if !online[e.ID] {
					v.problems = append(v.problems, fmt.Sprintf("%s: %s recorded live, not online at the Queen", h.id, e.ID))
					if at := s.firstSeenReady(e); at.After(since) {
						newReady++
						if at.After(v.readyAt) {
							v.readyAt = at
						}
					}
				}
			}
		}
	}
	for id := range online {
		if _, ok := recorded[id]; !ok {
			v.problems = append(v.problems, fmt.Sprintf("%s online at the Queen, recorded live by no hive", id))
		}
	}
	for _, w := range c.markedWorkers() {
		if id, ok := starting[w.pid]; ok && id == w.id {
			continue
		}
		if id, ok := byPID[w.pid]; !ok || id != w.id {
			v.problems = append(v.problems, fmt.Sprintf("ORPHAN worker %s (pid %d) of %s not in its registry", w.id, w.pid, w.hive.id))
		}
	}
	sort.Strings(v.problems)
	v.newReady = newReady > 0 && newReady == len(v.problems)
	return v
}

// firstSeenReady is when a look first saw e's process recorded ready.
func (s *soak) firstSeenReady(e registryEntry) time.Time {
	key := e.ID + "/" + strconv.Itoa(e.PID)
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.readySince[key]
	if !ok {
		at = time.Now()
		s.readySince[key] = at
	}
	return at
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// converge waits until a look finds nothing wrong, and says how long after since.
// strict: starts in progress count as not converged (at the start and the end, and
// before the next fault).
func (s *soak) converge(since time.Time, limit time.Duration, strict bool) (time.Duration, bool) {
	deadline := time.Now().Add(limit)
	var last view
	said := false
	from := since // a worker that turned ready after the heal is timed from then
	for {
		last = s.look(since, strict)
		if len(last.problems) == 0 {
			return time.Since(from), true
		}
		from = since
		if last.newReady {
			from = last.readyAt
		}
		if !strict && !said && time.Since(since) > convergeBound {
			said = true // what is still off one bound after the heal: where a slow one waits
			s.event("still off %v after healing: %s", convergeBound, strings.Join(last.problems, "; "))
		}
		if time.Now().After(deadline) {
			s.event("not converged: %s", strings.Join(last.problems, "; "))
			return 0, false
		}
		time.Sleep(20 * time.Millisecond) // poll interval: the look is the condition
	}
}

func (s *soak) placeOrder(model, hive string) {
	s.mu.Lock()
	s.nOrder++
	o := &order{id: fmt.Sprintf("chaos-%d-%d", s.seed%100000, s.nOrder), model: model, hive: hive}
	s.orders = append(s.orders, o)
	s.mu.Unlock()
	s.postOrder(o)
}

func (s *soak) postOrder(o *order) {
	var got wire.SpawnOrder
	code, err := s.c.api("POST", wire.PathSpawnOrders, wire.SpawnOrderRequest{OrderID: o.id, Model: o.model, Hive: o.hive}, &got)
	if err != nil || code != http.StatusAccepted && code != http.StatusOK {
		s.event("order %s (%s on %q): post failed (%d, %v); retried at the next check", o.id, o.model, o.hive, code, err)
		return
	}
	s.event("order %s placed: %s on %q", o.id, o.model, o.hive)
}

func (s *soak) retireWorker(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.orders {
		if o.worker == id && o.retired == "" {
			o.retired = "its worker was killed by the soak"
		}
	}
}

// checkOrders follows every order: an order the Queen forgot before it was done (a
// Queen restart) is placed again, as its requester would; a done one must be served by
// exactly one live worker, recorded by its hive and online. final: every order must be
// done by now.
func (s *soak) checkOrders(final bool) {
	s.mu.Lock()
	orders := append([]*order(nil), s.orders...)
	s.mu.Unlock()
	for _, o := range orders {
		if o.retired != "" {
			continue
		}
		// An order that becomes done in this check was done by its worker registering
		// with the Queen, which can come before its hive records the worker ready: its
		// hive has the convergence bound to do so.
		var doneAt time.Time
		if !o.done {
			deadline := time.Now().Add(time.Second)
			if final {
				deadline = time.Now().Add(60 * time.Second)
			}
			for {
				var got wire.SpawnOrder
				code, err := s.c.api("GET", wire.PathSpawnOrders+"/"+o.id, nil, &got)
				if err == nil && code == http.StatusNotFound {
					s.event("order %s forgotten by the Queen before it was done: placed again", o.id)
					s.postOrder(o)
				} else if err == nil && got.State == wire.OrderDone {
					o.done, o.worker, doneAt = true, got.WorkerID, time.Now()
					s.event("order %s done by %s", o.id, got.WorkerID)
					break
				} else if err == nil && got.State == wire.OrderFailed {
					s.violation("order %s failed: %s", o.id, got.Error)
					o.retired = "failed"
					break
				}
				if time.Now().After(deadline) {
					if final {
						s.violation("order %s not done within a minute (%s)", o.id, got.State)
					}
					break
				}
				time.Sleep(100 * time.Millisecond) // poll interval
			}
			if !o.done {
				continue
			}
		}
		serving := s.serving(o)
		for !doneAt.IsZero() && time.Since(doneAt) < convergeBound && !servedBy(serving, o.worker) {
			time.Sleep(20 * time.Millisecond) // poll interval
			serving = s.serving(o)
		}
		if !servedBy(serving, o.worker) {
			s.violation("order %s (done by %s): live workers for it %v, want exactly that one", o.id, o.worker, serving)
			o.retired = "violation reported"
		}
	}
}

// serving is the live registry entries (hive/id) that carry order o.
func (s *soak) serving(o *order) []string {
	var out []string
	for _, h := range s.c.nodes() {
		es, _ := readRegistry(h)
		for _, e := range es {
			if e.SpawnOrder == o.id && (e.State == "ready" || e.State == "stopping") {
				out = append(out, h.id+"/"+e.ID)
			}
		}
	}
	return out
}

// servedBy says whether serving is exactly one entry, worker's.
func servedBy(serving []string, worker string) bool {
	return len(serving) == 1 && strings.HasSuffix(serving[0], "/"+worker)
}

type reqResult struct {
	model, worker, err string
	start              time.Time
	took               time.Duration
}

// client streams chat completions through the Queen's gateway until ctx ends.
func (s *soak) client(ctx context.Context, n int) {
	hc := &http.Client{}
	for i := 0; ctx.Err() == nil; i++ {
		model := modelNames[(n+i)%len(modelNames)]
		r := s.request(hc, model)
		s.reqMu.Lock()
		switch {
		case r.err == "":
			s.reqOK++
		default:
			s.reqFailed++
			s.reqFailures = append(s.reqFailures, r)
		}
		s.reqMu.Unlock()
		time.Sleep(50 * time.Millisecond) // think time: the soak must not eat the machine
	}
}

func (s *soak) request(hc *http.Client, model string) (r reqResult) {
	r = reqResult{model: model, start: time.Now()}
	defer func() { r.took = time.Since(r.start) }() // named result: set after the return value
	ctx, cancel := context.WithTimeout(context.Background(), requestLimit)
	defer cancel()
	body, _ := json.Marshal(map[string]any{
		"model": model, "stream": true, "max_tokens": 12,
		"messages": []map[string]string{{"role": "user", "content": "Once upon a time"}},
	})
	req, _ := http.NewRequestWithContext(ctx, "POST", s.c.queenURL+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.c.token)
	resp, err := hc.Do(req)
	if err != nil {
		r.err = err.Error()
		s.checkHang(&r, ctx)
		return r
	}
	defer resp.Body.Close()
	r.worker = resp.Header.Get(queen.HeaderWorker)
	if resp.StatusCode != http.StatusOK {
		r.err = fmt.Sprintf("status %d", resp.StatusCode)
		return r
	}
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), ": worker "); ok && r.worker == "" {
			r.worker = id // a request held while its model loaded: named in the stream
		}
		line := strings.TrimPrefix(sc.Text(), "data: ")
		if line == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Model string `json:"model"`
		}
		if json.Unmarshal([]byte(line), &chunk) == nil && chunk.Model != "" && chunk.Model != model {
			s.violation("a request for %s answered by %s serving %s", model, r.worker, chunk.Model)
		}
	}
	if err := sc.Err(); err != nil {
		r.err = err.Error()
	} else if !done {
		r.err = "stream ended without [DONE]"
	}
	if done && r.worker == "" {
		s.violation("a %s answer that names no worker (%s header or \": worker\" comment)", model, queen.HeaderWorker)
	}
	s.checkHang(&r, ctx)
	return r
}

func (s *soak) checkHang(r *reqResult, ctx context.Context) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.violation("a request for %s hung: no answer nor error within %v (worker %q)", r.model, requestLimit, r.worker)
	}
}

// pct is the p-th percentile of the sorted ds by nearest rank: the smallest value with
// at least p of ds at or below it (p99 of a handful is their maximum).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(i, 0)]
}

// report prints the figures, and on a violation the seed and the event log.
func (s *soak) report() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report: seed %d, %v\n", s.seed, time.Since(s.began).Round(time.Second))
	kinds := append([]string(nil), faultKinds...)
	total := 0
	for _, k := range kinds {
		total += s.faults[k]
	}
	fmt.Fprintf(&b, "faults injected: %d", total)
	for _, k := range kinds {
		fmt.Fprintf(&b, ", %s %d", k, s.faults[k])
	}
	b.WriteString("\n")
	for k, why := range s.skipped {
		fmt.Fprintf(&b, "fault %s skipped: %s\n", k, why)
	}
	byKind := map[string][]time.Duration{"all": nil}
	for _, cv := range s.conv {
		byKind[cv.kind] = append(byKind[cv.kind], cv.took)
		byKind["all"] = append(byKind["all"], cv.took)
	}
	for _, k := range append([]string{"all"}, kinds...) {
		ds := byKind[k]
		if len(ds) == 0 {
			continue
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Fprintf(&b, "convergence after healing %-12s n=%-3d p50 %v p99 %v max %v\n", k, len(ds),
			pct(ds, .5).Round(time.Millisecond), pct(ds, .99).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	s.reqMu.Lock()
	inFault := 0
	var outside []string
	for _, r := range s.reqFailures {
		in := false
		for _, w := range s.windows {
			if r.start.Before(w[1]) && r.start.Add(r.took).After(w[0]) {
				in = true
				break
			}
		}
		if in {
			inFault++
		} else {
			outside = append(outside, fmt.Sprintf("%s at %.3fs (%v, worker %q): %s",
				r.model, r.start.Sub(s.began).Seconds(), r.took.Round(time.Millisecond), r.worker, r.err))
		}
	}
	fmt.Fprintf(&b, "requests: %d answered, %d failed (%d during faults, %d outside)\n", s.reqOK, s.reqFailed, inFault, len(outside))
	if len(outside) > 0 {
		fmt.Fprintf(&b, "failed outside faults: %s\n", strings.Join(outside, "; "))
	}
	s.reqMu.Unlock()
	retired := 0
	for _, o := range s.orders {
		if o.retired != "" {
			retired++
		}
	}
	fmt.Fprintf(&b, "spawn orders: %d placed, %d retired (worker killed on purpose)\n", len(s.orders), retired)
	fmt.Fprintf(&b, "violations: %d\n", len(s.violations))
	for _, v := range s.violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	if len(s.violations) > 0 || s.t.Failed() {
		fmt.Fprintf(&b, "replay: go test -race -count=1 -run Chaos -v ./chaos/ -chaos.seed=%d%s\nevent log:\n%s\n",
			s.seed, s.longFlag(), strings.Join(s.events, "\n"))
		s.t.Error(b.String())
		return
	}
	s.t.Log(b.String())
}
