// Package queen owns the mini Queen: the in-memory registry of workers, their liveness,
// the capabilities fetch, the Server-Sent Events feed and the OpenAI-compatible gateway.
// The desktop app embeds it; `beekeeper queen` runs it headless.
package queen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Config configures a Queen. The zero value is usable: it listens on
// wire.DefaultQueenAddr with the default heartbeat interval and no token.
type Config struct {
	// Addr is where Run listens (host:port). Default wire.DefaultQueenAddr.
	Addr string
	// AdvertiseURL is the URL handed to workers as queen_url. Empty: derived from the
	// Host header the registering spawner used to reach this Queen.
	AdvertiseURL string
	// Token, when set, is required as "Authorization: Bearer <token>" on every endpoint
	// but /health, and presented to workers on capabilities fetches and routed requests.
	Token string
	// Insecure lets Serve listen beyond loopback without a Token. Without it, a Queen
	// anyone on the network could register workers with refuses to start.
	Insecure bool
	// AllowedHosts and AllowedOrigins extend the Host and Origin checks every request
	// passes (httpguard.Config); the host of AdvertiseURL is always allowed.
	AllowedHosts   []string
	AllowedOrigins []string
	// WorkerNetworks are the networks workers may be registered and reached in. Empty:
	// any loopback or private address (RFC 1918, fc00::/7, 100.64.0.0/10). Link-local,
	// unspecified, multicast and broadcast addresses are refused always.
	WorkerNetworks []netip.Prefix
	// MaxConnsPerClient caps the connections one client address holds open under Serve;
	// 0 = httpguard.DefaultMaxConnsPerClient, -1 = no cap.
	MaxConnsPerClient int
	// BodyTimeout bounds reading a request body; 0 = httpguard.DefaultBodyTimeout.
	BodyTimeout time.Duration
	// HeartbeatInterval is the interval the Queen hands to workers. Default 5 s.
	HeartbeatInterval time.Duration
	// Retention is how long an offline worker stays listed before it is removed.
	// Default 10 minutes.
	Retention time.Duration
	// MaxWorkers caps the workers the registry holds: a registration of a new id beyond
	// it is refused (503 server_busy); a known id always re-registers. It bounds what a
	// registration flood can pile up until retention removes it. Default
	// DefaultMaxWorkers.
	MaxWorkers int
	// OrderLease is how long a hive holds a spawn order it claimed without renewing the
	// claim; then the order goes back to pending for any hive. Default 30 s.
	OrderLease time.Duration
	// MaxOrders caps the spawn orders not yet ended: a new order beyond it is refused
	// (503 server_busy). Default DefaultMaxOrders.
	MaxOrders int
	// LoadTimeout bounds how long a request for a model that is not loaded is held
	// while a hive loads it. Default: 60 s plus a second per 100 MB of the model file.
	LoadTimeout time.Duration
	// SweepInterval is how often liveness is re-evaluated. Default a quarter of the
	// heartbeat interval, capped at one second.
	SweepInterval time.Duration
	// Capabilities tunes the capabilities fetch; zero fields take defaults.
	Capabilities FetchConfig
	// Dial opens the Queen's connections to workers (capabilities fetches and routed
	// requests). Default a net.Dialer with a 3 s timeout; tests give one that refuses
	// every address off this machine, so a registered 10.0.0.7 is never dialled. Either
	// way the worker-network policy (WorkerNetworks) is checked around it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// Logger receives background noise and the causes of 5xx answers. Default discards.
	Logger *slog.Logger
}

// FetchConfig tunes the capabilities fetch that follows each registration.
type FetchConfig struct {
	Timeout     time.Duration // per attempt; default 2 s
	Attempts    int           // default 5
	Backoff     time.Duration // first retry delay, doubled each time; default 100 ms
	Concurrency int           // fetches in flight at once (the fetch goroutines); default 16
	Queue       int           // fetches waiting for a goroutine; beyond it one is dropped; default 10,000
}

// DefaultMaxWorkers is Config.MaxWorkers's default.
const DefaultMaxWorkers = 100_000

// Defaults of the spawn order book.
const (
	DefaultOrderLease = 30 * time.Second // Config.OrderLease
	DefaultMaxOrders  = 10_000           // Config.MaxOrders
)

// Queen is one mini Queen. Create it with New, serve it with Run or Serve.
type Queen struct {
	cfg     Config
	log     *slog.Logger
	policy  netPolicy        // where workers may be
	guard   *httpguard.Guard // Host and Origin checks, body deadline
	reg     *registry
	orders  *orderBook
	hives   *hiveTable // what each hive can start
	loads   *loads     // the models being loaded for held requests
	metrics *metrics
	caps    *fetcher
	gateway *gateway
	handler http.Handler

	// base lives as long as the Queen: capabilities fetches and event streams end with it.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	url string // set once listening

	started time.Time // when New ran: the restart grace of loads counts from it
}

// New validates cfg and builds a Queen. Nothing runs until Run or Serve.
func New(cfg Config) (*Queen, error) {
	if cfg.Addr == "" {
		cfg.Addr = wire.DefaultQueenAddr
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = wire.DefaultHeartbeatInterval
	}
	if cfg.HeartbeatInterval < time.Millisecond {
		return nil, fmt.Errorf("heartbeat interval %v is too short: use at least 1ms", cfg.HeartbeatInterval)
	}
	if cfg.Retention == 0 {
		cfg.Retention = 10 * time.Minute
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("retention %v is negative", cfg.Retention)
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = DefaultMaxWorkers
	}
	if cfg.MaxWorkers < 0 {
		return nil, fmt.Errorf("max workers %d is negative", cfg.MaxWorkers)
	}
	if cfg.OrderLease == 0 {
		cfg.OrderLease = DefaultOrderLease
	}
	if cfg.OrderLease < 0 {
		return nil, fmt.Errorf("order lease %v is negative", cfg.OrderLease)
	}
	if cfg.MaxOrders == 0 {
		cfg.MaxOrders = DefaultMaxOrders
	}
	if cfg.LoadTimeout < 0 {
		return nil, fmt.Errorf("load timeout %v is negative", cfg.LoadTimeout)
	}
	if cfg.MaxOrders < 0 {
		return nil, fmt.Errorf("max orders %d is negative", cfg.MaxOrders)
	}
	policy := netPolicy{networks: cfg.WorkerNetworks}
	if cfg.Dial == nil {
		cfg.Dial = policy.defaultDial()
	}
	cfg.Dial = policy.wrap(cfg.Dial)
	if cfg.MaxConnsPerClient == 0 {
		cfg.MaxConnsPerClient = httpguard.DefaultMaxConnsPerClient
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = min(max(cfg.HeartbeatInterval/4, 10*time.Millisecond), time.Second)
	}
	if cfg.AdvertiseURL != "" {
		u, err := parseQueenURL(cfg.AdvertiseURL)
		if err != nil {
			return nil, fmt.Errorf("advertise URL: %w", err)
		}
		cfg.AdvertiseURL = u
	}
	guardCfg := httpguard.Config{AllowedHosts: cfg.AllowedHosts, AllowedOrigins: cfg.AllowedOrigins, BodyTimeout: cfg.BodyTimeout}
	if cfg.AdvertiseURL != "" {
		if u, err := url.Parse(cfg.AdvertiseURL); err == nil {
			guardCfg.AllowedHosts = append(guardCfg.AllowedHosts, u.Hostname())
		}
	}
	guard, err := httpguard.New(guardCfg)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Capabilities = cfg.Capabilities.withDefaults()

	q := &Queen{cfg: cfg, log: cfg.Logger, policy: policy, guard: guard, started: time.Now()}
	q.base, q.cancel = context.WithCancel(context.Background())
	q.metrics = newMetrics()
	q.reg = newRegistry(cfg.Now, cfg.HeartbeatInterval, cfg.Retention, cfg.MaxWorkers)
	q.metrics.registerStates(q.reg)
	q.orders = newOrderBook(cfg.Now, cfg.OrderLease, cfg.Retention, cfg.MaxOrders, q.reg.workerForOrder, q.metrics.spawnOrders)
	q.hives = newHiveTable(cfg.Now, wire.HiveReportTTL)
	q.loads = newLoads()
	q.caps = newFetcher(q, cfg.Capabilities, cfg.Dial)
	q.gateway = newGateway(q, cfg.Dial)
	q.handler = q.routes()
	return q, nil
}

// Handler serves the Queen's HTTP API. Liveness only advances while Run or Serve runs.
func (q *Queen) Handler() http.Handler { return q.handler }

// Run listens on Config.Addr and serves until ctx ends.
func (q *Queen) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", q.cfg.Addr)
	if err != nil {
		return fmt.Errorf("queen: listen on %s: %w (is another Queen running? pick another --addr)", q.cfg.Addr, err)
	}
	return q.Serve(ctx, ln)
}

// Serve serves on ln and runs the liveness sweeper until ctx ends, then shuts down
// gracefully: event streams and capabilities fetches stop, in-flight requests get a few
// seconds. It closes ln. A Queen serves once.
func (q *Queen) Serve(ctx context.Context, ln net.Listener) error {
	if err := q.checkBound(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	ln = httpguard.LimitListener(ln, q.cfg.MaxConnsPerClient)
	q.mu.Lock()
	if q.url == "" {
		q.url = "http://" + ln.Addr().String()
	}
	q.mu.Unlock()

	fresh := newFreshConns()
	srv := &http.Server{
		Handler:           q.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(q.log.Handler(), slog.LevelDebug),
		ConnState:         fresh.track,
	}
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		q.sweepLoop(ctx)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	q.cancel() // ends event streams, which Shutdown would otherwise wait for
	q.reg.close()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		// Shutdown counts a connection that has not sent its first request as busy
		// for 5 s (clients dial spare connections), so it would hold the stop that long.
		// Such a connection carries no request: close it at once.
		time.Sleep(50 * time.Millisecond) // Shutdown has closed the listener by then
		fresh.closeAll()
	}()
	if shutErr := srv.Shutdown(shutCtx); shutErr != nil {
		_ = srv.Close()
	}
	<-sweepDone
	q.caps.stopped()
	q.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ErrNoToken is why a Queen refuses to listen beyond loopback without a token.
var ErrNoToken = errors.New("a Queen that listens beyond loopback needs a token")

// CheckListen refuses, before listening, an address other machines reach (all
// interfaces, or an address that is not loopback) when the Queen has no token and
// Config.Insecure is not set. A host name passes here; Serve checks what it bound.
func (q *Queen) CheckListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // net.Listen says what is wrong with it
	}
	ip, err := netip.ParseAddr(host)
	if host != "" && err != nil {
		return nil
	}
	return q.checkExposure(addr, ip)
}

// checkBound is CheckListen for the address a listener bound.
func (q *Queen) checkBound(addr net.Addr) error {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return nil // a Unix socket: only this machine reaches it
	}
	return q.checkExposure(addr.String(), ap.Addr())
}

func (q *Queen) checkExposure(where string, ip netip.Addr) error {
	if q.cfg.Token != "" || q.cfg.Insecure || ip.IsValid() && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("queen: %w: on %q anyone who reaches the port could register workers and read their prompts; set a token ($%s), listen on 127.0.0.1, or pass --insecure",
		ErrNoToken, where, wire.EnvQueenToken)
}

// Close stops background work (capabilities fetches, event streams) of a Queen that is
// served by someone else's server through Handler. Serve does this itself.
func (q *Queen) Close() {
	q.cancel()
	q.reg.close()
	q.caps.stopped()
	q.wg.Wait()
}

// URL is the Queen's own URL: the advertised one, else the address it listens on.
func (q *Queen) URL() string {
	if q.cfg.AdvertiseURL != "" {
		return q.cfg.AdvertiseURL
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.url != "" {
		return q.url
	}
	return "http://" + q.cfg.Addr
}

// HeartbeatInterval is the interval the Queen hands to workers.
func (q *Queen) HeartbeatInterval() time.Duration { return q.cfg.HeartbeatInterval }

// Workers lists every known worker, sorted by id.
func (q *Queen) Workers() []wire.Worker { return q.reg.list() }

// Worker returns one worker by id.
func (q *Queen) Worker(id string) (wire.Worker, bool) { return q.reg.get(id) }

// Subscribe returns the workers known now and a channel of every later change, for an
// embedding app that wants the same feed as GET /v1/events without HTTP. The channel is
// closed when cancel is called, when the Queen stops, or when the subscriber falls more
// than a buffer behind (then re-subscribe: the snapshot catches up).
func (q *Queen) Subscribe() (snapshot []wire.Worker, events <-chan wire.Event, cancel func()) {
	return q.reg.subscribe()
}

// sweepLoop advances liveness and spawn-order leases on a ticker until ctx or the Queen
// ends.
func (q *Queen) sweepLoop(ctx context.Context) {
	t := time.NewTicker(q.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.base.Done():
			return
		case <-t.C:
			q.reg.sweep()
			q.orders.sweep()
		}
	}
}

// freshConns tracks the server's connections that have not yet sent a request.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newFreshConns() *freshConns { return &freshConns{conns: map[net.Conn]struct{}{}} }

func (f *freshConns) track(c net.Conn, state http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if state == http.StateNew {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
}
