package hive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/queensync"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Errors of the hive's own operations.
var (
	ErrNotFound  = localregistry.ErrNotFound
	ErrStillLive = errors.New("worker is still running: stop it first")
	ErrClosed    = errors.New("hive is closed")
	// ErrBadPortRange is a port range that cannot be used (SetPortRange, Options).
	ErrBadPortRange = errors.New("invalid port range")
)

// livenessEvery is how often workers we did not start (adopted) are checked: it bounds
// how late their death is noticed. Our own children are noticed at once (wait). Where
// the kernel can watch a process (a pidfd), a check is a look at a channel; elsewhere
// it reads /proc.
const livenessEvery = 250 * time.Millisecond

// Hive is one machine's set of workers. Safe for concurrent use.
type Hive struct {
	opts   Options
	log    *slog.Logger
	reg    *localregistry.Registry
	sp     *spawner.Spawner
	syncer *queensync.Syncer
	http   *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	procs    map[string]*spawner.Process // children of this process, by id
	stopping map[string]bool             // stop requested: an exit is "exited", not "crashed"
	closed   bool
	// queenChanged is closed (and replaced) when the Queen changes: the spawn-order
	// poll waiting at the old Queen ends at once.
	queenChanged chan struct{}
	claimToken   string // this hive's token in spawn-order claims (see hive/orders.go)

	subMu sync.Mutex
	subs  map[chan Event]struct{}

	statsMu   sync.Mutex
	stats     map[string]Stats
	statsSubs map[chan map[string]Stats]struct{}
}

// Open loads the local registry (moving a corrupt file aside), re-adopts live workers,
// marks dead ones exited, and starts the stats ticker, the crash watcher and the Queen
// sync. Close releases it.
func Open(opts Options) (*Hive, error) {
	if opts.StateDir == "" {
		opts.StateDir = dirs.State()
	}
	if opts.PortMin <= 0 {
		opts.PortMin = wire.DefaultPortMin
	}
	if opts.PortMax <= 0 {
		opts.PortMax = wire.DefaultPortMax
	}
	if err := validPortRange(opts.PortMin, opts.PortMax); err != nil {
		return nil, err
	}
	if opts.SpawnedBy == "" {
		opts.SpawnedBy = wire.SpawnedByGUI
	}
	if opts.HiveID == "" {
		opts.HiveID = DefaultHiveID()
	}
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = time.Second
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = 4 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	reg, err := localregistry.Open(opts.StateDir, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("open local registry: %w", err)
	}
	sp, err := spawner.New(spawner.Config{
		Binary:       opts.WorkerBinary,
		LlamaLib:     opts.LlamaLib,
		LogDir:       logDir(opts.StateDir),
		ReadyTimeout: opts.ReadyTimeout,
		Logger:       opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hive{
		opts: opts, log: opts.Logger, reg: reg, sp: sp,
		http:   &http.Client{Timeout: 2 * time.Second},
		ctx:    ctx,
		cancel: cancel,
		procs:  map[string]*spawner.Process{}, stopping: map[string]bool{},
		queenChanged: make(chan struct{}), claimToken: newClaimToken(),
		subs:  map[chan Event]struct{}{},
		stats: map[string]Stats{}, statsSubs: map[chan map[string]Stats]struct{}{},
	}
	h.syncer = queensync.New(queensync.Config{
		Registry: reg,
		Interval: opts.SyncInterval,
		Logger:   opts.Logger,
		OnStatus: func(queensync.Status) { h.publish(Event{Kind: EventQueen}) },
	})
	if err := h.syncer.SetQueen(opts.QueenURL, opts.QueenToken); err != nil {
		cancel()
		return nil, err
	}
	h.adoptAll()

	changes, unsub := reg.Subscribe()
	if !opts.Passive {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); h.syncer.Run(ctx) }()
	}
	if !opts.Passive && opts.ResolveModel != nil {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); h.serveOrders(ctx) }()
	}
	h.wg.Add(2)
	go func() { defer h.wg.Done(); defer unsub(); h.forward(ctx, changes) }()
	go func() { defer h.wg.Done(); h.tick(ctx) }()
	return h, nil
}

func logDir(state string) string { return state + string(os.PathSeparator) + "logs" }

// adoptAll re-adopts each live entry whose process (same pid and start time) still runs
// and answers as the same worker; the others are marked exited. Nothing is dropped.
func (h *Hive) adoptAll() {
	for _, e := range h.reg.List() {
		if !e.State.Live() {
			continue
		}
		h.checkAdopted(e, true)
	}
}

// checkAdopted checks one live entry we are not the parent of. At open (full) it also
// asks the worker who it is; afterwards only the pid is watched.
func (h *Hive) checkAdopted(e Entry, full bool) {
	alive := spawner.Alive(e.PID, e.ProcessStart)
	reason := "process is gone"
	if alive && full && e.State != StateStarting {
		ctx, cancel := context.WithTimeout(h.ctx, 3*time.Second)
		defer cancel()
		_, token := h.syncer.Queen()
		caps, err := spawner.Capabilities(ctx, h.http, e.URL(), token)
		var apiErr *wire.APIError
		switch {
		case !spawner.Healthy(ctx, h.http, e.URL()):
			alive, reason = false, "process runs but does not answer /health"
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
			// Same pid and start time, serving on its port: ours, spawned with another
			// token (the app opens before it knows its Queen, or the token changed).
			// Never stop a healthy worker over that; its Queen traffic needs a restart.
			h.log.Warn("adopted a worker spawned with another API token; restart it to use the current one", "id", e.ID)
		case err != nil:
			alive, reason = false, "process runs but /capabilities failed: "+err.Error()
		case caps.WorkerID != e.ID:
			alive, reason = false, fmt.Sprintf("another worker (%s) answers on its port", caps.WorkerID)
		}
	}
	if alive {
		return
	}
	if reason != "process is gone" && spawner.Alive(e.PID, e.ProcessStart) && e.State != StateStarting {
		// Our worker, but unusable: stop it rather than orphan it.
		h.log.Warn("stopping unresponsive worker", "id", e.ID, "pid", e.PID, "reason", reason)
		_ = spawner.StopPID(h.ctx, e.PID, e.ProcessStart, 5*time.Second)
	}
	h.markGone(e.ID, e.PID, nil, reason)
}

// markGone records a worker's exit: "exited" when asked to stop or clean, else "crashed".
func (h *Hive) markGone(id string, pid int, code *int, reason string) {
	h.mu.Lock()
	asked := h.stopping[id]
	delete(h.stopping, id)
	if p := h.procs[id]; p != nil && p.PID == pid {
		delete(h.procs, id)
	}
	h.mu.Unlock()
	_, err := h.reg.Modify(id, func(e *Entry) {
		if e.PID != pid {
			return
		}
		if !e.State.Live() {
			// Another hive on this registry (watching it as adopted) saw it go first and
			// could not know the exit code; the parent's reap fills it in.
			if code == nil || e.ExitCode != nil {
				return
			}
			asked = asked || e.State == StateExited
		}
		// StateStopping is in the shared file: a stop asked by another hive counts too.
		asked = asked || e.State == StateStopping
		e.State = StateCrashed
		if asked || (code != nil && *code == wire.ExitOK) {
			e.State = StateExited
		}
		e.ExitCode = code
		e.ExitReason = reason
		if code != nil && reason == "" {
			e.ExitReason = wire.ExitReason(*code)
			if *code < 0 {
				e.ExitReason = "killed by a signal"
			}
		}
	})
	if err != nil && !errors.Is(err, localregistry.ErrNotFound) {
		h.log.Warn("record worker exit", "id", id, "err", err)
	}
	h.syncer.Trigger()
}

// forward turns registry changes (ours and other instances') into hive events.
func (h *Hive) forward(ctx context.Context, changes <-chan localregistry.Change) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			h.publish(Event{Kind: EventKind(c.Kind), Entry: c.Entry})
		}
	}
}

// tick is the one ticker: liveness of adopted workers, registry changes made by other
// instances, stats for every live worker, and log bounds.
func (h *Hive) tick(ctx context.Context) {
	t := time.NewTicker(livenessEvery)
	defer t.Stop()
	sampler := spawner.NewSampler()
	var lastStats, lastTrim time.Time
	watches := adoptedWatches{}
	defer watches.closeAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.reg.Reload(); err != nil {
			h.log.Warn("reload local registry", "err", err)
		}
		entries := h.reg.List()
		h.mu.Lock()
		children := make(map[string]int, len(h.procs))
		for id, p := range h.procs {
			children[id] = p.PID
		}
		h.mu.Unlock()
		pids := map[string]int{}
		for _, e := range entries {
			if !e.State.Live() {
				continue
			}
			if pid, ok := children[e.ID]; !ok || pid != e.PID {
				if watches.exited(e) {
					h.checkAdopted(e, false)
				}
			}
			pids[e.ID] = e.PID
		}
		watches.keepOnly(pids)
		now := time.Now()
		if now.Sub(lastStats) >= h.opts.StatsInterval-livenessEvery/2 {
			lastStats = now
			h.publishStats(sampler.Sample(pids))
		}
		if now.Sub(lastTrim) >= 10*time.Second {
			lastTrim = now
			for _, e := range entries {
				_ = spawner.TrimLog(e.LogFile, h.opts.MaxLogBytes)
			}
		}
	}
}

// placement picks bind address, advertised host per CONTRACT §3: loopback for a
// loopback Queen (or none); for a remote Queen, bind all addresses and advertise the
// local address of the route to it, unless the options say otherwise.
func (h *Hive) placement() (bind, advertise string, err error) {
	queenURL, _ := h.syncer.Queen()
	bind, advertise = h.opts.BindHost, h.opts.AdvertiseHost
	remote := false
	var queenHost string
	if queenURL != "" {
		u, perr := url.Parse(queenURL)
		if perr == nil {
			queenHost = u.Host
			remote = !wire.IsLoopback(u.Hostname())
		}
	}
	if bind == "" {
		bind = wire.DefaultHost
		if remote {
			bind = "0.0.0.0"
		}
	}
	if advertise == "" {
		advertise = wire.DefaultHost
		if remote {
			if advertise, err = RouteAddr(queenHost); err != nil {
				return "", "", err
			}
		} else if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
			advertise = bind
		}
	}
	return bind, advertise, nil
}

// RouteAddr is this machine's address on the route to hostport (no packet is sent: a UDP
// "connect" only picks the source address).
func RouteAddr(hostport string) (string, error) {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(hostport, "80")
	}
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return "", fmt.Errorf("find the local address that reaches the Queen %s: %w (set the advertise host by hand)", hostport, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// Spawn starts a worker, waits until it serves (progress reports each phase; it may be
// nil), records it, and registers it with the Queen when one is set. Errors are typed:
// see ErrRuntimeMissing, ErrModelLoad, ErrPortTaken, ... and *StartError.
func (h *Hive) Spawn(ctx context.Context, req SpawnRequest, progress func(SpawnProgress)) (Entry, error) {
	if h.isClosed() {
		return Entry{}, ErrClosed
	}
	if progress == nil {
		progress = func(SpawnProgress) {}
	}
	if req.WorkerType == "" {
		req.WorkerType = wire.DefaultWorkerType
	}
	// The worker, the registry and the Queen's capabilities all keep this path; a
	// relative one would mean nothing to a restarted app in another folder.
	if abs, err := filepath.Abs(req.ModelPath); err == nil {
		req.ModelPath = abs
	}
	bind, advertise, err := h.placement()
	if err != nil {
		return Entry{}, err
	}
	queenURL, token := h.syncer.Queen()
	syncState := SyncOff
	if queenURL != "" {
		syncState = SyncPending
	}
	var current Entry // the attempt in progress, recorded as "starting"
	claim := func(id string, port, pid int) error {
		ct, _ := spawner.CreateTime(pid)
		e := Entry{
			ID: id, PID: pid, ProcessStart: ct, Port: port,
			BindHost: bind, AdvertiseHost: advertise,
			Model: wire.ModelName(req.ModelPath), ModelPath: req.ModelPath,
			WorkerType: req.WorkerType, SpawnedBy: h.opts.SpawnedBy,
			CtxSize: req.CtxSize, Threads: req.Threads,
			StartedAt: time.Now().UTC(), LogFile: h.sp.LogFile(id),
			State: StateStarting, Sync: syncState, QueenURL: queenURL,
			SpawnOrder: req.SpawnOrder,
		}
		if err := h.recordStarting(e); err != nil {
			return err // the spawner stops the process
		}
		current = e
		return nil
	}
	lastFrac := -1.0
	onProgress := func(p SpawnProgress) {
		switch p.Phase {
		case PhaseLoading:
			if p.Fraction-lastFrac >= 0.05 && current.ID != "" {
				lastFrac = p.Fraction
				_, _ = h.reg.Modify(current.ID, func(e *Entry) {
					if e.PID == current.PID {
						e.LoadProgress = p.Fraction
					}
				})
			}
		case PhaseRetrying:
			h.forget(current)
			current = Entry{}
		}
		progress(p)
	}
	portMin, portMax := h.PortRange()
	proc, err := h.sp.Start(ctx, spawner.Spec{
		ModelPath: req.ModelPath, WorkerType: req.WorkerType,
		CtxSize: req.CtxSize, Threads: req.Threads, GPULayers: req.GPULayers,
		Port: req.Port, PortMin: portMin, PortMax: portMax,
		BindHost: bind, AdvertiseHost: advertise,
		SpawnedBy: h.opts.SpawnedBy, QueenURL: queenURL, Token: token,
		SpawnOrder: req.SpawnOrder,
		Claim:      claim,
	}, onProgress)
	if err != nil {
		h.forget(current)
		return Entry{}, err
	}
	h.mu.Lock()
	h.procs[proc.ID] = proc
	h.mu.Unlock()
	go h.reap(proc) // owned by the child's lifetime: exits when the worker does

	err = h.reg.Update(func(m map[string]Entry) error {
		e, ok := m[proc.ID]
		if !ok || e.PID != proc.PID {
			return fmt.Errorf("%w: %s with pid %d", ErrNotFound, proc.ID, proc.PID)
		}
		e.State, e.LoadProgress, e.ProcessStart = StateReady, 1, proc.CreateTime
		m[proc.ID] = e
		return nil
	})
	if err != nil {
		// Without its entry the worker would run unseen: never synced, never stopped.
		_ = proc.Stop(context.Background())
		return Entry{}, fmt.Errorf("record worker %s: %w", proc.ID, err)
	}
	if queenURL != "" {
		if req.RegisterWithQueen {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_ = h.syncer.RegisterNow(rctx, proc.ID) // a failure leaves it pending for the sync
			cancel()
		} else {
			h.syncer.Trigger()
		}
	}
	e, _ := h.reg.Get(proc.ID)
	return e, nil
}

// recordStarting records a just-started process as "starting". It never replaces the
// entry of another process that is still live under that id (a concurrent spawn on the
// same port, or another app instance's): that start fails as ErrPortTaken instead.
func (h *Hive) recordStarting(e Entry) error {
	err := h.reg.Update(func(m map[string]Entry) error {
		if cur, ok := m[e.ID]; ok && cur.PID != e.PID && cur.State.Live() && spawner.Alive(cur.PID, cur.ProcessStart) {
			return &spawner.StartError{Kind: spawner.ErrPortTaken, Port: e.Port, ExitCode: -1,
				Err: fmt.Errorf("worker %s is already live (pid %d)", e.ID, cur.PID)}
		}
		m[e.ID] = e
		return nil
	})
	if err != nil {
		return fmt.Errorf("record starting worker %s: %w", e.ID, err)
	}
	return nil
}

// forget removes the entry of a start attempt that never served.
func (h *Hive) forget(e Entry) {
	if e.ID == "" {
		return
	}
	_ = h.reg.Update(func(m map[string]Entry) error {
		if cur, ok := m[e.ID]; ok && cur.PID == e.PID {
			delete(m, e.ID)
		}
		return nil
	})
}

// reap records the exit of a child the moment it is reaped.
func (h *Hive) reap(p *spawner.Process) {
	<-p.Done()
	if h.isClosed() {
		// Closed: Close's own Stop records this exit, or the next hive's adoption does.
		// Writing now would touch a state folder its owner may already be removing.
		return
	}
	code := p.ExitCode()
	h.markGone(p.ID, p.PID, &code, "")
}

// Stop stops a worker (SIGTERM to its group, grace, SIGKILL), marks it exited and
// deregisters it from the Queen. Stopping an exited worker is a no-op.
func (h *Hive) Stop(ctx context.Context, id string) error {
	e, ok := h.reg.Get(id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if !e.State.Live() {
		return nil
	}
	h.mu.Lock()
	h.stopping[id] = true
	proc := h.procs[id]
	h.mu.Unlock()
	_, _ = h.reg.Modify(id, func(x *Entry) {
		if x.PID == e.PID && x.State.Live() {
			x.State = StateStopping
		}
	})
	var err error
	if proc != nil && proc.PID == e.PID {
		err = proc.Stop(ctx)
		if err == nil {
			code := proc.ExitCode()
			h.markGone(id, e.PID, &code, "stopped")
		}
	} else {
		err = spawner.StopPID(ctx, e.PID, e.ProcessStart, 5*time.Second)
		if err == nil {
			h.markGone(id, e.PID, nil, "stopped")
		}
	}
	if err != nil {
		// The worker may still run: undo the "stopping" mark, or its row would stay stuck
		// in "stopping" and a later crash would be recorded as a clean exit.
		h.mu.Lock()
		delete(h.stopping, id)
		h.mu.Unlock()
		_, _ = h.reg.Modify(id, func(x *Entry) {
			if x.PID == e.PID && x.State == StateStopping {
				x.State = e.State
			}
		})
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if derr := h.syncer.DeregisterAt(dctx, e.QueenURL, id); derr != nil {
		h.log.Info("deregister stopped worker; the sync retries", "id", id, "err", derr)
	} else {
		_, _ = h.reg.Modify(id, func(x *Entry) {
			if x.PID == e.PID {
				x.Sync, x.SyncError = SyncOff, ""
			}
		})
	}
	return nil
}

// Restart stops a worker if it runs and spawns it again with the same model, type,
// settings and port.
func (h *Hive) Restart(ctx context.Context, id string) (Entry, error) {
	e, ok := h.reg.Get(id)
	if !ok {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := h.Stop(ctx, id); err != nil {
		return Entry{}, err
	}
	return h.Spawn(ctx, SpawnRequest{
		ModelPath: e.ModelPath, WorkerType: e.WorkerType,
		CtxSize: e.CtxSize, Threads: e.Threads, Port: e.Port,
		RegisterWithQueen: true,
	}, nil)
}

// Remove forgets an exited or crashed entry and its log; a live one is ErrStillLive.
func (h *Hive) Remove(id string) error {
	var logFile string
	err := h.reg.Update(func(m map[string]Entry) error {
		e, ok := m[id]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if e.State.Live() {
			return fmt.Errorf("%w: %s", ErrStillLive, id)
		}
		logFile = e.LogFile
		delete(m, id)
		return nil
	})
	if err == nil && logFile != "" {
		_ = os.Remove(logFile)
	}
	return err
}

// List returns every entry, live first, then by start time.
func (h *Hive) List() []Entry {
	out := h.reg.List()
	sort.SliceStable(out, func(i, j int) bool { return out[i].State.Live() && !out[j].State.Live() })
	return out
}

// Get returns one entry.
func (h *Hive) Get(id string) (Entry, bool) { return h.reg.Get(id) }

// Subscribe delivers every registry change (and EventQueen on Queen status changes).
// A subscriber more than 256 events behind misses some but is never blocked on; call
// List for the full picture. unsubscribe closes the channel.
func (h *Hive) Subscribe() (events <-chan Event, unsubscribe func()) {
	ch := make(chan Event, 256)
	h.subMu.Lock()
	h.subs[ch] = struct{}{}
	h.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.subMu.Lock()
			if _, ok := h.subs[ch]; ok { // Close may have closed it already
				delete(h.subs, ch)
				close(ch)
			}
			h.subMu.Unlock()
		})
	}
}

func (h *Hive) publish(ev Event) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Stats returns the latest sample of a live worker.
func (h *Hive) Stats(id string) (Stats, bool) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	s, ok := h.stats[id]
	return s, ok
}

// SubscribeStats delivers one map (worker id -> sample) per stats tick; all subscribers
// share the one sampler. A slow subscriber gets the newest sample, never a backlog.
func (h *Hive) SubscribeStats() (samples <-chan map[string]Stats, unsubscribe func()) {
	ch := make(chan map[string]Stats, 1)
	h.statsMu.Lock()
	h.statsSubs[ch] = struct{}{}
	h.statsMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.statsMu.Lock()
			delete(h.statsSubs, ch)
			close(ch)
			h.statsMu.Unlock()
		})
	}
}

func (h *Hive) publishStats(s map[string]Stats) {
	h.statsMu.Lock()
	defer h.statsMu.Unlock()
	h.stats = s
	for ch := range h.statsSubs {
		select { // replace an unread sample with the newer one
		case <-ch:
		default:
		}
		select {
		case ch <- s:
		default:
		}
	}
}

// LogFile is the path of a worker's log file.
func (h *Hive) LogFile(id string) (string, error) {
	e, ok := h.reg.Get(id)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return e.LogFile, nil
}

// LogTail returns up to n last lines of a worker's log.
func (h *Hive) LogTail(id string, n int) ([]string, error) {
	path, err := h.LogFile(id)
	if err != nil {
		return nil, err
	}
	return spawner.Tail(path, n)
}

// SetQueen points the hive at another Queen ("" = Queenless): every live worker is
// registered there within a second, and deregistered from the old one best-effort.
// Workers learn the new Queen from its capabilities fetch and move their heartbeats.
func (h *Hive) SetQueen(url, token string) error {
	if err := h.syncer.SetQueen(url, token); err != nil {
		return err
	}
	h.mu.Lock()
	if h.opts.QueenURL != url || h.opts.QueenToken != token {
		close(h.queenChanged)
		h.queenChanged = make(chan struct{})
	}
	h.opts.QueenURL, h.opts.QueenToken = url, token
	h.mu.Unlock()
	h.publish(Event{Kind: EventQueen})
	return nil
}

// SetPortRange changes the ports automatic spawns pick from (0, 0 = the defaults
// 8080..8200). It takes effect for the next spawn; running workers keep their ports.
func (h *Hive) SetPortRange(min, max int) error {
	if min == 0 && max == 0 {
		min, max = wire.DefaultPortMin, wire.DefaultPortMax
	}
	if err := validPortRange(min, max); err != nil {
		return err
	}
	h.mu.Lock()
	h.opts.PortMin, h.opts.PortMax = min, max
	h.mu.Unlock()
	return nil
}

// PortRange is the range automatic spawns pick from.
func (h *Hive) PortRange() (min, max int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opts.PortMin, h.opts.PortMax
}

func validPortRange(min, max int) error {
	if min < 1 || max > 65535 || min > max {
		return fmt.Errorf("%w: %d..%d: give 1 <= first port <= last port <= 65535", ErrBadPortRange, min, max)
	}
	return nil
}

// SetLlamaLib changes the llama.cpp library folder handed to workers spawned from now on
// ("" = each worker locates the installed runtime). A folder without the library is
// refused with an error matching ErrRuntimeMissing, and the previous folder stays.
func (h *Hive) SetLlamaLib(dir string) error {
	if err := h.sp.SetLlamaLib(dir); err != nil {
		return err
	}
	h.mu.Lock()
	h.opts.LlamaLib = dir
	h.mu.Unlock()
	return nil
}

// LlamaLib is the llama.cpp library folder the next spawn hands its worker.
func (h *Hive) LlamaLib() string { return h.sp.LlamaLib() }

// QueenStatus is the hive's current view of its Queen.
func (h *Hive) QueenStatus() QueenStatus {
	s := h.syncer.Status()
	url, _ := h.syncer.Queen()
	return QueenStatus{
		URL: url, Reachable: s.Reachable, LastContact: s.LastContact, LastError: s.LastError,
		Registered: s.Registered, Pending: s.Pending,
		OrdersAs: h.ordersAs(),
	}
}

// ordersAs is the hive id spawn orders reach this hive by, "" when it takes none.
func (h *Hive) ordersAs() string {
	if h.opts.ResolveModel == nil || h.opts.Passive {
		return ""
	}
	return h.opts.HiveID
}

// SyncNow runs one full sync with the Queen and returns when it is done (the CLI uses
// it before exiting; the app relies on the background loop).
func (h *Hive) SyncNow(ctx context.Context) { h.syncer.SyncFull(ctx) }

// Close stops the hive's goroutines; with stopWorkers (or Options.StopWorkersOnClose)
// it first stops every live worker, otherwise they keep running and the next Open
// re-adopts them.
func (h *Hive) Close(stopWorkers bool) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	var errs []error
	if stopWorkers || h.opts.StopWorkersOnClose {
		var wg sync.WaitGroup
		var emu sync.Mutex
		for _, e := range h.reg.List() {
			if !e.State.Live() {
				continue
			}
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := h.Stop(ctx, id); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}(e.ID)
		}
		wg.Wait()
	}
	h.cancel()
	h.wg.Wait()
	h.subMu.Lock()
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
	h.subMu.Unlock()
	return errors.Join(errs...)
}

func (h *Hive) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// adoptedWatches holds the exit watches of adopted workers, by id; the tick goroutine
// owns it.
type adoptedWatches map[string]adoptedWatch

type adoptedWatch struct {
	pid int
	w   *spawner.ExitWatch // nil where the kernel cannot watch: poll instead
}

// exited reports whether e's process may have gone and needs the full check: its watch
// fired, or there is no watch to ask.
func (ws adoptedWatches) exited(e Entry) bool {
	aw, ok := ws[e.ID]
	if !ok || aw.pid != e.PID {
		if ok && aw.w != nil {
			aw.w.Close()
		}
		aw = adoptedWatch{pid: e.PID}
		aw.w, _ = spawner.WatchExit(e.PID, e.ProcessStart)
		ws[e.ID] = aw
	}
	if aw.w == nil {
		return true
	}
	select {
	case <-aw.w.Exited:
		return true
	default:
		return false
	}
}

// keepOnly drops the watches of workers that are no longer live (pids: id -> pid).
func (ws adoptedWatches) keepOnly(pids map[string]int) {
	for id, aw := range ws {
		if pid, ok := pids[id]; !ok || pid != aw.pid {
			if aw.w != nil {
				aw.w.Close()
			}
			delete(ws, id)
		}
	}
}

func (ws adoptedWatches) closeAll() { ws.keepOnly(nil) }
