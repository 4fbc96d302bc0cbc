// Package worker owns one `beekeeper worker` process: it serves one GGUF model over the
// OpenAI-compatible HTTP API of docs/protocol.md §1 and keeps its Queen informed by heartbeats.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/internal/workerkey"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// Config is everything a worker needs; the `beekeeper worker` flags fill it.
type Config struct {
	ModelPath     string
	Host          string // bind address; "" = 127.0.0.1
	Port          int
	WorkerID      string // "" = wire.WorkerID(type, advertise host, port)
	WorkerType    string // "" = llm
	QueenURL      string // "" = Queenless until a Queen adopts the worker via /capabilities
	AdvertiseHost string // the host the Queen reaches the worker at; "" = Host
	SpawnedBy     string
	SpawnOrder    string // the Queen's spawn order it was started for; sent when it registers itself
	CtxSize       int
	Threads       int
	Parallel      int
	Queue         int    // requests that may wait for a slot; 0 = 4 per slot; -1 = none
	GPULayers     string // auto (default), all, or a count; 0 = CPU only
	Embeddings    bool   // serve /v1/embeddings from a second context
	Projector     string // --mmproj: the model's multimodal projector (mmproj GGUF), for images in chats; "" = text only
	// IdleTTL stops the worker after that long with no request (0 = never), so a hive
	// unloads a model nobody uses; the next request for it loads it again.
	IdleTTL  time.Duration
	APIToken string // the bearer token; `beekeeper worker` reads it from $BEEKEEPER_API_TOKEN
	LlamaLib string
	// WorkerKey is the process's secret identity key, sent to the Queen with every
	// registration, heartbeat and deregistration (docs/security.md). "" = a new random
	// one; `beekeeper worker` takes $BEEKEEPER_WORKER_KEY when a spawner set it.
	WorkerKey string
	// KeyFile says whether the key is written to its owner-only file
	// (workerkey.Path) for the hive that spawned the worker. `beekeeper worker` does.
	KeyFile bool
	// AllowedHosts and AllowedOrigins extend the Host and Origin checks
	// (httpguard.Config); the advertise host is always allowed.
	AllowedHosts   []string
	AllowedOrigins []string
	// MaxConnsPerClient caps the connections one client address holds; 0 =
	// httpguard.DefaultMaxConnsPerClient, -1 = no cap.
	MaxConnsPerClient int
	// BodyTimeout bounds reading a request body; 0 = httpguard.DefaultBodyTimeout.
	BodyTimeout time.Duration
	// ShutdownGrace bounds a graceful stop; 0 = 3 s.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
}

// ArgError is a bad flag or flag combination (wire.ExitBadArgs).
type ArgError struct{ Msg string }

func (e *ArgError) Error() string { return e.Msg }

// PortInUseError says the port is taken (wire.ExitPortInUse): the spawner tries the next.
type PortInUseError struct {
	Addr string
	Err  error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("port already in use: %s (pick another --port)", e.Addr)
}
func (e *PortInUseError) Unwrap() error { return e.Err }

// ExitCode maps an error of Run to the process exit code the spawner acts on.
func ExitCode(err error) int {
	var argErr *ArgError
	var portErr *PortInUseError
	var modelErr *engine.ModelError
	switch {
	case err == nil:
		return wire.ExitOK
	case errors.As(err, &argErr):
		return wire.ExitBadArgs
	case errors.As(err, &portErr):
		return wire.ExitPortInUse
	case errors.Is(err, llamaruntime.ErrMissing):
		return wire.ExitRuntimeMissing
	case errors.As(err, &modelErr), errors.Is(err, engine.ErrNotGGUF):
		return wire.ExitModelLoad
	default:
		return wire.ExitFailure
	}
}

func (c *Config) normalize() error {
	if c.ModelPath == "" {
		return &ArgError{"--model is required: the path of a .gguf file"}
	}
	if c.Port < 1 || c.Port > 65535 {
		return &ArgError{fmt.Sprintf("--port %d is outside 1..65535", c.Port)}
	}
	if c.Host == "" {
		c.Host = wire.DefaultHost
	}
	if c.AdvertiseHost == "" {
		c.AdvertiseHost = c.Host
		if ip := net.ParseIP(c.Host); ip != nil && ip.IsUnspecified() {
			c.AdvertiseHost = wire.DefaultHost // 0.0.0.0 is no address to call back on
		}
	}
	if c.WorkerType == "" {
		c.WorkerType = wire.DefaultWorkerType
	}
	if c.WorkerID == "" {
		c.WorkerID = wire.WorkerID(c.WorkerType, c.AdvertiseHost, c.Port)
	}
	if !wire.ValidWorkerID(c.WorkerID) {
		return &ArgError{fmt.Sprintf("--worker-id %q: use 1..%d characters of [A-Za-z0-9._-]", c.WorkerID, wire.MaxWorkerIDLen)}
	}
	if c.CtxSize < 0 || c.Threads < 0 || c.Parallel < 0 {
		return &ArgError{"--ctx-size, --threads and --parallel must not be negative"}
	}
	if c.Parallel == 0 {
		c.Parallel = 1
	}
	if err := parseGPULayers(c.GPULayers); err != nil {
		return &ArgError{err.Error()}
	}
	switch {
	case c.Queue == 0:
		c.Queue = 4 * c.Parallel
	case c.Queue < 0:
		c.Queue = 0
	}
	if c.QueenURL != "" {
		if err := checkQueenURL(c.QueenURL); err != nil {
			return &ArgError{fmt.Sprintf("--queen-url: %v", err)}
		}
	}
	if c.IdleTTL < 0 {
		return &ArgError{"--ttl must not be negative (0 keeps the worker running)"}
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 3 * time.Second
	}
	switch {
	case c.WorkerKey == "":
		c.WorkerKey = workerkey.New()
	case !workerkey.Valid(c.WorkerKey):
		return &ArgError{fmt.Sprintf("$%s: use %d..%d characters of [A-Za-z0-9._~-]", wire.EnvWorkerKey, workerkey.MinLen, workerkey.MaxLen)}
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = httpguard.DefaultMaxConnsPerClient
	}
	if _, err := httpguard.New(c.guardConfig()); err != nil {
		return &ArgError{err.Error()}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return nil
}

// guardConfig is what the Host and Origin checks accept: the configured names, plus the
// advertise host (the Queen calls the worker by it).
func (c *Config) guardConfig() httpguard.Config {
	return httpguard.Config{
		AllowedHosts:   append([]string{c.AdvertiseHost}, c.AllowedHosts...),
		AllowedOrigins: c.AllowedOrigins,
		BodyTimeout:    c.BodyTimeout,
	}
}

// Worker is a running worker: its listener, HTTP server, engine (once loaded) and
// heartbeats.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	startedAt time.Time
	modelName string

	progress atomic.Uint32 // float32 bits of the load progress
	engine   atomic.Pointer[engine.Engine]
	used     lastUse // for --ttl
	offload  offload // set before engine is stored

	guard   *httpguard.Guard // Host and Origin checks, body deadline
	metrics *workerMetrics   // GET /metrics

	// stopping ends when the worker shuts down: in-flight generations end cleanly.
	stopping   context.Context
	stopAll    context.CancelFunc
	heartbeats *heartbeater
}

// Run serves until ctx ends (SIGTERM), then stops gracefully: streams in flight end with a
// final chunk and [DONE], the Queen hears that the worker leaves, and Run returns nil.
// Start-up failures return errors that ExitCode maps to the contract's exit codes.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.normalize(); err != nil {
		return err
	}
	// Cheap checks first, so a wrong file or a missing runtime fails in milliseconds.
	if err := engine.CheckModelFile(cfg.ModelPath); err != nil {
		return err
	}
	if _, err := llamaruntime.Locate(cfg.LlamaLib); err != nil {
		return err
	}
	// Bind before loading: a taken port is known at once, and /health reports progress.
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if addrInUse(err) {
			return &PortInUseError{Addr: addr, Err: err}
		}
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	ln = httpguard.LimitListener(ln, cfg.MaxConnsPerClient)
	if cfg.KeyFile {
		// Written once the port is ours: the file of this id and port is then this
		// process's, never a worker's that failed to bind it.
		if path, err := workerkey.Write(cfg.WorkerID, cfg.Port, cfg.WorkerKey); err != nil {
			cfg.Logger.Warn("identity key not written for the hive: its registrations of this worker will be refused once the worker binds its id", "err", err)
		} else {
			defer workerkey.Remove(cfg.WorkerID, cfg.Port)
			cfg.Logger.Debug("identity key written", "path", path)
		}
	}

	w, err := newWorker(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer w.stopAll()
	srv := &http.Server{
		Handler:           w.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	w.log.Info("listening", "addr", ln.Addr().String(), "worker_id", cfg.WorkerID, "model", w.modelName)

	hbDone := make(chan struct{})
	go func() { defer close(hbDone); w.heartbeats.run(w.stopping) }()

	loaded := make(chan error, 1)
	go func() { loaded <- w.load() }()

	select {
	case err = <-loaded:
		if err == nil {
			w.heartbeats.ready()
			idle := w.idleAfter(cfg.IdleTTL)
			select {
			case <-ctx.Done():
			case <-idle:
				w.log.Info("idle for the TTL: stopping", "ttl", cfg.IdleTTL)
			case err = <-serveErr:
				err = fmt.Errorf("http server: %w", err)
			}
		}
	case <-ctx.Done():
		// A stop while loading: llama.cpp cannot be interrupted mid-load, so exit without
		// waiting for it; the process ends and the OS reclaims the memory.
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	}
	w.shutdown(srv, hbDone)
	return err
}

func newWorker(cfg Config) (*Worker, error) {
	w := &Worker{
		cfg:       cfg,
		log:       cfg.Logger,
		startedAt: time.Now().UTC(),
		modelName: wire.ModelName(cfg.ModelPath),
	}
	w.stopping, w.stopAll = context.WithCancel(context.Background())
	w.metrics = newWorkerMetrics(w.engine.Load)
	w.heartbeats = newHeartbeater(w)
	var err error
	if w.guard, err = httpguard.New(cfg.guardConfig()); err != nil {
		return nil, &ArgError{err.Error()}
	}
	return w, nil
}

func (w *Worker) load() error {
	start := time.Now()
	nextLog := float32(0.25)
	plan, err := w.planOffload()
	if err != nil {
		return err
	}
	e, err := engine.Load(engine.Config{
		GPULayers:  plan.layers,
		Embeddings: w.cfg.Embeddings,
		Projector:  w.cfg.Projector,
		ModelPath:  w.cfg.ModelPath,
		LibDir:     w.cfg.LlamaLib,
		CtxSize:    w.cfg.CtxSize,
		Threads:    w.cfg.Threads,
		Parallel:   w.cfg.Parallel,
		Queue:      w.cfg.Queue,
		Progress: func(p float32) {
			w.progress.Store(math.Float32bits(p))
			if p >= nextLog {
				w.log.Info("loading model", "progress", fmt.Sprintf("%.0f%%", p*100))
				for nextLog <= p {
					nextLog += 0.25
				}
			}
		},
	})
	if err != nil {
		return err
	}
	w.progress.Store(math.Float32bits(1))
	w.offload = plan
	w.engine.Store(e)
	w.log.Info("ready", "url", "http://"+net.JoinHostPort(w.cfg.AdvertiseHost, strconv.Itoa(w.cfg.Port)),
		"model", w.modelName, "ctx_size", e.ContextSize(), "parallel", e.Parallel(), "threads", e.Threads(),
		"runtime", plan.backend, "device", w.deviceName(), "gpu_layers", e.GPULayers(), "offload", plan.reason,
		"chat_template", e.ChatTemplate(), "load_ms", time.Since(start).Milliseconds())
	return nil
}

// shutdown ends generations, tells the Queen the worker leaves and closes the server.
func (w *Worker) shutdown(srv *http.Server, hbDone <-chan struct{}) {
	w.log.Info("stopping")
	w.stopAll() // generations in flight finish their stream now; heartbeats stop
	<-hbDone
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownGrace)
	defer cancel()
	w.heartbeats.leave(ctx)
	if err := srv.Shutdown(ctx); err != nil {
		w.log.Warn("forced close of open connections", "err", err)
		_ = srv.Close()
	}
	if e := w.engine.Load(); e != nil {
		if err := e.Close(ctx); err != nil {
			w.log.Warn("engine", "err", err)
		}
	}
	w.log.Info("stopped")
}

// deviceName is what the model runs on, for /capabilities and heartbeats: "cpu", or the
// GPU's llama.cpp name and description.
func (w *Worker) deviceName() string {
	if d := w.offload.device; d != nil {
		return d.Name + " (" + d.Description + ")"
	}
	return Device
}
