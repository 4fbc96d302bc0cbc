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

	"github.com/beekeeper-hive/beekeeper/internal/broadcast"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/models"
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
	// ErrStarting is a Stop of a worker whose spawn (in this or another process) has
	// claimed its port but not yet recorded its process.
	ErrStarting = errors.New("worker is still being started: stop it once its spawn has recorded it (a moment)")
)

// livenessEvery is how often workers we did not start (adopted) are checked: it bounds
// how late their death is noticed. Our own children are noticed at once (wait). Where
// the kernel can watch a process (a pidfd), a check is a look at a channel; elsewhere
// it reads /proc.
const livenessEvery = 250 * time.Millisecond

// unrecordedEvery is how often the hive looks for running workers of its state folder
// that no entry records (see adoptUnrecorded): it bounds how long such a worker stays
// unseen by a running app. Open looks at once.
const unrecordedEvery = 5 * time.Second

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

	self      int // this process's pid and start time: the claimant of its spawns' claims
	selfStart int64

	mu       sync.Mutex
	procs    map[string]*spawner.Process // children of this process, by id
	stopping map[string]bool             // stop requested: an exit is "exited", not "crashed"
	warned   map[string]bool             // failures logged and still failing (see warnOnce)
	closed   bool
	// queenChanged is closed (and replaced) when the Queen changes: the spawn-order
	// poll waiting at the old Queen ends at once.
	queenChanged chan struct{}
	claimToken   string               // this hive's token in spawn-order claims (see hive/orders.go)
	estimates    models.EstimateCache // memory estimates of the models it reports

	events broadcast.Hub[Event]

	statsMu  sync.Mutex
	stats    map[string]Stats
	statsHub broadcast.Hub[map[string]Stats]
}

// Open loads the local registry (a corrupt file is moved aside and rebuilt from the
// workers still running), re-adopts live workers, adopts running workers no entry records,
// marks dead ones exited, and starts the stats ticker, the crash watcher and the Queen
// sync. Close releases it.
func Open(opts Options) (*Hive, error) {
	if opts.StateDir == "" {
		opts.StateDir = dirs.State()
	}
	// Workers carry the state folder as their owner's marker: one spelling for all.
	abs, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state folder %s: %w", opts.StateDir, err)
	}
	opts.StateDir = abs
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
	sp, err := spawner.New(spawner.Config{
		Binary:       opts.WorkerBinary,
		LlamaLib:     opts.LlamaLib,
		LogDir:       logDir(opts.StateDir),
		ReadyTimeout: opts.ReadyTimeout,
		HiveDir:      opts.StateDir,
		Logger:       opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hive{
		opts: opts, log: opts.Logger, sp: sp,
		http:   &http.Client{Timeout: 2 * time.Second},
		ctx:    ctx,
		cancel: cancel,
		self:   os.Getpid(),
		procs:  map[string]*spawner.Process{}, stopping: map[string]bool{}, warned: map[string]bool{},
		queenChanged: make(chan struct{}), claimToken: newClaimToken(),
		stats: map[string]Stats{},
	}
	h.selfStart, _ = spawner.CreateTime(h.self)
	h.reg, err = localregistry.OpenWith(opts.StateDir, localregistry.Options{Logger: opts.Logger, Rebuild: h.runningEntries})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open local registry: %w", err)
	}
	h.syncer = queensync.New(queensync.Config{
		Registry: h.reg,
		Interval: opts.SyncInterval,
		Logger:   opts.Logger,
		OnStatus: func(queensync.Status) { h.events.Publish(Event{Kind: EventQueen}) },
	})
	if err := h.syncer.SetQueen(opts.QueenURL, opts.QueenToken); err != nil {
		cancel()
		return nil, err
	}
	h.adoptUnrecorded()
	h.adoptAll()

	changes, unsub := h.reg.Subscribe()
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
			h.events.Publish(Event{Kind: EventKind(c.Kind), Entry: c.Entry})
		}
	}
}

// placement picks bind address, advertised host per docs/protocol.md §3: loopback for a
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
//
// The port is claimed in the registry before anything starts, and the process recorded
// the moment it has: a spawn killed at any point leaves a claim (dropped by the next
// hive) or a recorded worker, never a worker that no entry names.
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
	// Before any claim: a FIFO or folder must fail at once, not hang or reserve a port.
	if err := spawner.CheckModel(req.ModelPath); err != nil {
		return Entry{}, err
	}
	bind, advertise, err := h.placement()
	if err != nil {
		return Entry{}, err
	}
	queenURL, token := h.syncer.Queen()
	claim := Entry{
		BindHost: bind, AdvertiseHost: advertise,
		Model: wire.ModelName(req.ModelPath), ModelPath: req.ModelPath,
		WorkerType: req.WorkerType, SpawnedBy: h.opts.SpawnedBy,
		CtxSize: req.CtxSize, Threads: req.Threads, GPULayers: req.GPULayers, TTL: ttlText(req.TTL),
		State: StateStarting, Sync: SyncOff, QueenURL: queenURL,
		SpawnOrder: req.SpawnOrder,
		ClaimPID:   h.self, ClaimStart: h.selfStart,
	}
	if queenURL != "" {
		claim.Sync = SyncPending
	}
	var current Entry // the attempt in progress: its claim, then its process
	reserve := func(skip map[int]bool) (int, error) {
		e, err := h.reserve(claim, req.Port, skip)
		if err != nil {
			return 0, err
		}
		current = e
		return e.Port, nil
	}
	started := func(id string, port, pid int) error {
		e, err := h.recordStarted(id, pid)
		if err != nil {
			return err // the spawner stops the process
		}
		current = e
		return nil
	}
	lastFrac := -1.0
	onProgress := func(p SpawnProgress) {
		switch p.Phase {
		case PhaseLoading:
			if p.Fraction-lastFrac >= 0.05 && current.PID != 0 {
				lastFrac = p.Fraction
				_, _ = h.reg.Transition(current.ID, current.PID, func(e *Entry) error {
					e.LoadProgress = p.Fraction
					return nil
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
		CtxSize: req.CtxSize, Threads: req.Threads, GPULayers: req.GPULayers, TTL: req.TTL,
		Port: req.Port, PortMin: portMin, PortMax: portMax,
		BindHost: bind, AdvertiseHost: advertise,
		SpawnedBy: h.opts.SpawnedBy, QueenURL: queenURL, Token: token,
		SpawnOrder: req.SpawnOrder,
		Reserve:    reserve,
		Started:    started,
	}, onProgress)
	if err != nil {
		h.forget(current)
		return Entry{}, err
	}
	h.mu.Lock()
	h.procs[proc.ID] = proc
	h.mu.Unlock()
	go h.reap(proc) // owned by the child's lifetime: exits when the worker does

	e, err := h.reg.Transition(proc.ID, proc.PID, func(e *Entry) error {
		if e.State != StateStarting {
			return fmt.Errorf("it was %s while it started", e.State)
		}
		e.State, e.LoadProgress, e.ProcessStart = StateReady, 1, proc.CreateTime
		return nil
	})
	if err != nil {
		// Without its entry the worker would run unseen: never synced, never stopped.
		_ = proc.Stop(context.Background())
		return Entry{}, fmt.Errorf("record worker %s as ready: %w", proc.ID, err)
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
	if got, ok := h.reg.Get(proc.ID); ok {
		e = got
	}
	return e, nil
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
	if err := h.markGone(p.ID, p.PID, &code, ""); err != nil {
		h.warnOnce("exit:"+p.ID, "record worker exit; retried while the worker is listed live", "id", p.ID, "err", err)
	}
}

// Stop stops a worker (SIGTERM to its group, grace, SIGKILL), marks it exited and
// deregisters it from the Queen. Stopping an exited worker is a no-op. A worker that
// stopped but whose exit could not be written to the registry (a full disk) is an
// error: the registry still lists it as before, and the hive records the exit once it can.
func (h *Hive) Stop(ctx context.Context, id string) error {
	e, ok := h.reg.Get(id)
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if !e.State.Live() {
		return nil
	}
	if e.Claimed() {
		if claimantAlive(e) {
			return fmt.Errorf("stop worker %s: %w (spawned by pid %d)", id, ErrStarting, e.ClaimPID)
		}
		// Its spawn died: settle the claim (adopt the worker it left, or drop it).
		h.adoptUnrecorded()
		if e, ok = h.reg.Get(id); !ok || !e.State.Live() || e.Claimed() {
			return nil
		}
	}
	h.mu.Lock()
	h.stopping[id] = true
	proc := h.procs[id]
	h.mu.Unlock()
	// A failure to write "stopping" (a full disk) does not keep the worker running: the
	// person asked, and the exit is recorded below or reported.
	_, _ = h.reg.Transition(id, e.PID, func(x *Entry) error {
		if x.State.Live() {
			x.State = StateStopping
		}
		return nil
	})
	var err error
	var code *int
	if proc != nil && proc.PID == e.PID {
		if err = proc.Stop(ctx); err == nil {
			c := proc.ExitCode()
			code = &c
		}
	} else {
		err = spawner.StopPID(ctx, e.PID, e.ProcessStart, 5*time.Second)
	}
	if err != nil {
		// The worker may still run: undo the "stopping" mark, or its row would stay stuck
		// in "stopping" and a later crash would be recorded as a clean exit.
		h.mu.Lock()
		delete(h.stopping, id)
		h.mu.Unlock()
		_, _ = h.reg.Transition(id, e.PID, func(x *Entry) error {
			if x.State == StateStopping {
				x.State = e.State
			}
			return nil
		})
		return fmt.Errorf("stop worker %s: %w", id, err)
	}
	if err := h.markGone(id, e.PID, code, "stopped"); err != nil {
		now, _ := h.reg.Get(id)
		return fmt.Errorf("stop worker %s: the worker stopped, but the registry still lists it as %s: %w", id, now.State, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if derr := h.syncer.DeregisterAt(dctx, e.QueenURL, e); derr != nil {
		h.log.Info("deregister stopped worker; the sync retries", "id", id, "err", derr)
	} else {
		_, _ = h.reg.Transition(id, e.PID, func(x *Entry) error {
			x.Sync, x.SyncError = SyncOff, ""
			return nil
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
		CtxSize: e.CtxSize, Threads: e.Threads, GPULayers: e.GPULayers, TTL: parseTTL(e.TTL), Port: e.Port,
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
// List for the full picture. unsubscribe closes the channel; so does Close.
func (h *Hive) Subscribe() (events <-chan Event, unsubscribe func()) {
	return h.events.Subscribe(broadcast.DropNewest, 256)
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
	return h.statsHub.Subscribe(broadcast.KeepLatest, 1)
}

func (h *Hive) publishStats(s map[string]Stats) {
	h.statsMu.Lock()
	h.stats = s
	h.statsMu.Unlock()
	h.statsHub.Publish(s)
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
	h.events.Publish(Event{Kind: EventQueen})
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
			if !e.State.Live() || (e.Claimed() && e.ClaimPID == h.self) {
				continue // our spawns in flight: closed, they start nothing more (see reserve)
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
	h.events.Close()
	h.statsHub.Close()
	return errors.Join(errs...)
}

func (h *Hive) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// ttlText is a TTL as the registry keeps it: "" for none.
func ttlText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// parseTTL reads a recorded TTL back; a bad one is none.
func parseTTL(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}
