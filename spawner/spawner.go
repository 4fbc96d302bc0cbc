// Package spawner starts, health-checks and stops local worker processes (`beekeeper
// worker`); it owns their lifecycle, their log files and their resource sampling.
package spawner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Config is how a Spawner starts workers.
type Config struct {
	Binary       string        // beekeeper binary run as `worker`; default os.Executable()
	LlamaLib     string        // --llama-lib for workers; "" lets the worker locate it
	LogDir       string        // per-worker log files live here
	ReadyTimeout time.Duration // no load progress for this long fails the start; default 60s
	PortRetries  int           // extra ports tried when a worker exits with ExitPortInUse; default 5
	StopGrace    time.Duration // SIGTERM to SIGKILL; default 5s
	// HiveDir is the state folder of the hive that owns the workers. Each worker carries it
	// (EnvHiveState) with its id (EnvWorkerID) in its environment, so FindWorkers finds
	// the workers of that folder even when no record of them survived.
	HiveDir string
	Logger  *slog.Logger
}

// Spec is one worker to start.
type Spec struct {
	ModelPath        string
	WorkerType       string // default "llm"
	CtxSize, Threads int
	GPULayers        string        // --gpu-layers: "auto" or a count; "" = the worker's default, and no flag
	TTL              time.Duration // --ttl: stop after this long idle; 0 = keep running
	Port             int           // 0 = first free port in PortMin..PortMax
	PortMin, PortMax int
	BindHost         string // default 127.0.0.1
	AdvertiseHost    string // default BindHost (or 127.0.0.1 for a wildcard bind)
	SpawnedBy        string
	QueenURL         string
	// Token is the worker's API token, also sent to the Queen. It reaches the worker
	// through its environment (EnvAPIToken), never its command line, which every local
	// user can read.
	Token      string
	SpawnOrder string // the Queen's spawn order this worker is for; it tells the Queen when it registers itself
	// Reserve, when set, picks the port of each attempt and records it before anything
	// starts (the hive claims it in its registry, under the registry's lock, so spawns in
	// this process or another never pick one port). skip holds the ports that failed in
	// this start. A *StartError of kind ErrPortTaken from it fails the start. Without
	// Reserve the first free port in PortMin..PortMax is taken.
	Reserve func(skip map[int]bool) (port int, err error)
	// Started, when set, records the started process (its worker id, port and pid) before
	// Start waits for it. When it fails the process is stopped: unrecorded, it would run
	// unseen. A *StartError of kind ErrPortTaken moves an automatic port on to the next one.
	Started func(id string, port, pid int) error
}

// Environment variables a worker is started with (EnvAPIToken is the name the worker
// reads its token from, wire.EnvAPIToken).
const (
	EnvWorkerID  = "BEEKEEPER_WORKER_ID"  // the worker's id; with EnvHiveState, its owner's marker
	EnvHiveState = "BEEKEEPER_HIVE_STATE" // the state folder of the hive that started it
	EnvAPIToken  = "BEEKEEPER_API_TOKEN"  // the worker's bearer token, also presented to its Queen
	// Never passed on from the hive's own environment: the Queen's token is not the
	// worker's unless Spec.Token says so, and one identity key shared by every worker
	// would be no identity.
	envQueenToken = "BEEKEEPER_QUEEN_TOKEN"
	envWorkerKey  = "BEEKEEPER_WORKER_KEY"
)

// Spawner starts workers. Safe for concurrent use.
type Spawner struct {
	cfg  Config
	http *http.Client

	mu       sync.Mutex
	llamaLib string // --llama-lib for the next start; changed by SetLlamaLib

	// pickMu is held from picking a port to starting the process when the Spec has no
	// Reserve, so two starts of this Spawner never pick one port.
	pickMu sync.Mutex
}

// New returns a Spawner; it checks nothing until Start.
func New(cfg Config) (*Spawner, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the beekeeper binary: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.PortRetries <= 0 {
		cfg.PortRetries = 5
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("create log folder: %w", err)
	}
	if cfg.HiveDir != "" {
		abs, err := filepath.Abs(cfg.HiveDir)
		if err != nil {
			return nil, fmt.Errorf("state folder: %w", err)
		}
		cfg.HiveDir = abs
	}
	return &Spawner{cfg: cfg, http: &http.Client{Timeout: 2 * time.Second}, llamaLib: cfg.LlamaLib}, nil
}

// SetLlamaLib changes the llama.cpp library folder handed to workers started from now
// on ("" = each worker locates the runtime itself). Running workers keep theirs.
func (s *Spawner) SetLlamaLib(dir string) error {
	if err := ValidateLlamaLib(dir); err != nil {
		return err
	}
	s.mu.Lock()
	s.llamaLib = dir
	s.mu.Unlock()
	return nil
}

// LlamaLib is the folder handed to the next worker ("" = the worker locates it).
func (s *Spawner) LlamaLib() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.llamaLib
}

// ValidateLlamaLib checks that dir ("" is always fine) holds the llama.cpp library; the
// error matches ErrRuntimeMissing and names the fix.
func ValidateLlamaLib(dir string) error {
	if dir == "" {
		return nil
	}
	if _, err := llamaruntime.Locate(dir); err != nil {
		return fmt.Errorf("%w: %s holds no %s: choose the folder of a llama.cpp build, or leave it empty to use the installed runtime",
			ErrRuntimeMissing, dir, llamaruntime.LibraryFile())
	}
	return nil
}

// Process is a worker this Spawner started; one goroutine waits for it and owns its exit.
type Process struct {
	ID         string
	Port       int
	PID        int
	CreateTime int64 // ms since the epoch, as gopsutil reports it
	LogFile    string
	BindHost   string
	Advertise  string

	cmd      *exec.Cmd
	group    *group // Windows: the worker's Job Object; nil on Unix (its process group is its pid)
	done     chan struct{}
	exitCode atomic.Int64
	grace    time.Duration
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the exit code once Done is closed (-1 for death by signal).
func (p *Process) ExitCode() int { return int(p.exitCode.Load()) }

// Stop asks the worker's process group to end (SIGTERM on Unix, CTRL_BREAK on Windows),
// waits up to the grace period, then kills the group (SIGKILL, or TerminateJobObject)
// and waits for the reap. A ctx already done sends nothing.
func (p *Process) Stop(ctx context.Context) error { return p.stop(ctx) }

// Start starts one worker and waits until it serves. The port is the Spec's, or the
// first free one in the range; when the worker still finds its port taken (a race with
// another program), the next free port is tried, PortRetries times.
func (s *Spawner) Start(ctx context.Context, spec Spec, progress func(Progress)) (*Process, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	if err := CheckModel(spec.ModelPath); err != nil {
		return nil, err
	}
	if spec.WorkerType == "" {
		spec.WorkerType = wire.DefaultWorkerType
	}
	if spec.BindHost == "" {
		spec.BindHost = wire.DefaultHost
	}
	if spec.AdvertiseHost == "" {
		spec.AdvertiseHost = spec.BindHost
		if ip := net.ParseIP(spec.BindHost); ip != nil && ip.IsUnspecified() {
			spec.AdvertiseHost = wire.DefaultHost
		}
	}
	skip := map[int]bool{}
	for attempt := 0; ; attempt++ {
		p, err := s.launch(spec, skip)
		if err == nil {
			progress(Progress{Phase: PhaseStarting, WorkerID: p.ID, Port: p.Port, PID: p.PID})
			if err = s.waitReady(ctx, p, spec.Token, progress); err != nil {
				_ = p.Stop(context.Background())
			}
		}
		var se *StartError
		if err != nil && errors.As(err, &se) && se.Kind == ErrPortTaken && spec.Port == 0 && attempt < s.cfg.PortRetries {
			skip[se.Port] = true
			progress(Progress{Phase: PhaseRetrying, Port: se.Port})
			continue
		}
		if err != nil {
			return nil, err
		}
		progress(Progress{Phase: PhaseReady, WorkerID: p.ID, Port: p.Port, PID: p.PID, Fraction: 1})
		return p, nil
	}
}

// launch picks (or reserves) the port, starts the process and hands it to spec.Started.
func (s *Spawner) launch(spec Spec, skip map[int]bool) (*Process, error) {
	port, unlock, err := s.pickPort(spec, skip)
	if err != nil {
		return nil, err
	}
	defer unlock()
	id := wire.WorkerID(spec.WorkerType, spec.AdvertiseHost, port)
	logPath := filepath.Join(s.cfg.LogDir, id+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open worker log: %w", err)
	}
	args := s.args(spec, id, port)
	fmt.Fprintf(logf, "=== %s beekeeper %v\n", time.Now().UTC().Format(time.RFC3339), args)

	// The child writes straight into its log file, not into a pipe: a pipe would hand it
	// SIGPIPE the moment the app quits, and workers must outlive the app. A file never
	// blocks the worker, and readers tail it (LogTail) instead of sharing a buffer.
	cmd := exec.Command(s.cfg.Binary, args...)
	cmd.Env = s.env(spec, id)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = s.cfg.StopGrace
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start worker %s: %w", s.cfg.Binary, err)
	}
	logf.Close() // the child holds its own descriptor
	g, err := newGroup(cmd)
	if err != nil {
		// It still stops, one process rather than a group: nothing it starts is killed with it.
		s.cfg.Logger.Warn("worker runs outside a job object", "pid", cmd.Process.Pid, "err", err)
	}
	p := track(cmd, g, s.cfg.StopGrace)
	p.ID, p.Port, p.LogFile = id, port, logPath
	p.BindHost, p.Advertise = spec.BindHost, spec.AdvertiseHost
	if spec.Started != nil {
		if err := spec.Started(id, port, p.PID); err != nil {
			// Unrecorded, it would run unseen: nobody could stop or sync it.
			_ = p.Stop(context.Background())
			return nil, err
		}
	}
	return p, nil
}

// pickPort is the attempt's port: reserved by spec.Reserve, or else probed under pickMu,
// held (unlock) until the process has started.
func (s *Spawner) pickPort(spec Spec, skip map[int]bool) (port int, unlock func(), err error) {
	if spec.Reserve != nil {
		port, err = spec.Reserve(skip)
		return port, func() {}, err
	}
	s.pickMu.Lock()
	port = spec.Port
	if port == 0 {
		port, err = FreePort(spec.BindHost, spec.PortMin, spec.PortMax, skip)
	} else if !PortFree(spec.BindHost, port) {
		err = &StartError{Kind: ErrPortTaken, Port: port, ExitCode: -1}
	}
	if err != nil {
		s.pickMu.Unlock()
		return 0, nil, err
	}
	return port, s.pickMu.Unlock, nil
}

// env is the worker's environment: ours, with the hive's marker and the token set, and
// the secrets of our own environment removed (a token there is not the worker's unless
// the spec says so).
func (s *Spawner) env(spec Spec, id string) []string {
	set := map[string]string{EnvWorkerID: id, EnvHiveState: s.cfg.HiveDir, EnvAPIToken: spec.Token, envQueenToken: "", envWorkerKey: ""}
	out := make([]string, 0, len(os.Environ())+len(set))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !hasKey(set, k) {
			out = append(out, kv)
		}
	}
	for k, v := range set {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// track wraps a started child: one goroutine owns its reap and records the exit code.
func track(cmd *exec.Cmd, g *group, grace time.Duration) *Process {
	p := &Process{PID: cmd.Process.Pid, cmd: cmd, group: g, done: make(chan struct{}), grace: grace}
	p.exitCode.Store(-1)
	go func() { // owns the reap; exits when the process does
		_ = cmd.Wait()
		if cmd.ProcessState != nil {
			p.exitCode.Store(int64(cmd.ProcessState.ExitCode())) // -1 for death by signal
		}
		p.group.release()
		close(p.done)
	}()
	p.CreateTime, _ = CreateTime(p.PID)
	return p
}

func (s *Spawner) args(spec Spec, id string, port int) []string {
	a := []string{"worker",
		"--model", spec.ModelPath,
		"--port", strconv.Itoa(port),
		"--host", spec.BindHost,
		"--worker-id", id,
		"--worker-type", spec.WorkerType,
		"--advertise-host", spec.AdvertiseHost,
	}
	if spec.SpawnedBy != "" {
		a = append(a, "--spawned-by", spec.SpawnedBy)
	}
	if spec.QueenURL != "" {
		a = append(a, "--queen-url", spec.QueenURL)
	}
	if spec.SpawnOrder != "" {
		a = append(a, "--spawn-order", spec.SpawnOrder)
	}
	if spec.CtxSize > 0 {
		a = append(a, "--ctx-size", strconv.Itoa(spec.CtxSize))
	}
	if spec.Threads > 0 {
		a = append(a, "--threads", strconv.Itoa(spec.Threads))
	}
	if spec.GPULayers != "" {
		a = append(a, "--gpu-layers", spec.GPULayers)
	}
	if spec.TTL > 0 {
		a = append(a, "--ttl", spec.TTL.String())
	}
	if lib := s.LlamaLib(); lib != "" {
		a = append(a, "--llama-lib", lib)
	}
	return a
}

// waitReady polls /health until 200. The deadline restarts whenever load progress moves;
// a process exit fails at once with its code and last log lines.
func (s *Spawner) waitReady(ctx context.Context, p *Process, token string, progress func(Progress)) error {
	base := "http://" + net.JoinHostPort(loopbackFor(p.BindHost), strconv.Itoa(p.Port))
	deadline := time.NewTimer(s.cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := -1.0
	for {
		select {
		case <-p.done:
			code := p.ExitCode()
			return &StartError{Kind: kindForExit(code), Port: p.Port, ExitCode: code, LastLines: lastLines(p.LogFile, 10)}
		case <-ctx.Done():
			return &StartError{Kind: ErrNotReady, Port: p.Port, ExitCode: -1, Err: ctx.Err(), LastLines: lastLines(p.LogFile, 10)}
		case <-deadline.C:
			return &StartError{Kind: ErrNotReady, Port: p.Port, ExitCode: -1,
				Err:       fmt.Errorf("no load progress for %s", s.cfg.ReadyTimeout),
				LastLines: lastLines(p.LogFile, 10)}
		case <-tick.C:
		}
		ok, frac := s.health(ctx, base)
		if ok {
			return s.checkIdentity(ctx, base, p, token)
		}
		if frac > last {
			last = frac
			if !deadline.Stop() {
				select {
				case <-deadline.C:
				default:
				}
			}
			deadline.Reset(s.cfg.ReadyTimeout)
			progress(Progress{Phase: PhaseLoading, WorkerID: p.ID, Port: p.Port, PID: p.PID, Fraction: frac})
		}
	}
}

// health is one /health probe: ready, or the load fraction (-1 when unreachable).
func (s *Spawner) health(ctx context.Context, base string) (bool, float64) {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, base+wire.PathHealth, nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return false, -1
	}
	defer resp.Body.Close()
	var h wire.Health
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h)
	if resp.StatusCode == http.StatusOK {
		return true, 1
	}
	if h.Progress != nil {
		return false, *h.Progress
	}
	return false, 0
}

func (s *Spawner) checkIdentity(ctx context.Context, base string, p *Process, token string) error {
	caps, err := Capabilities(ctx, s.http, base, token)
	if err != nil {
		return &StartError{Kind: ErrWrongWorker, Port: p.Port, ExitCode: -1, Err: err}
	}
	if caps.WorkerID != p.ID {
		return &StartError{Kind: ErrWrongWorker, Port: p.Port, ExitCode: -1,
			Err: fmt.Errorf("it reports worker id %q, expected %q", caps.WorkerID, p.ID)}
	}
	return nil
}

// Capabilities fetches a worker's GET /capabilities.
func Capabilities(ctx context.Context, hc *http.Client, base, token string) (wire.Capabilities, error) {
	var caps wire.Capabilities
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, base+wire.PathCapabilities, nil)
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return caps, fmt.Errorf("capabilities: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, wire.MaxCapabilitiesBody))
	if resp.StatusCode != http.StatusOK {
		return caps, fmt.Errorf("capabilities: %w", wire.DecodeError(resp.StatusCode, body))
	}
	if err := json.Unmarshal(body, &caps); err != nil {
		return caps, fmt.Errorf("capabilities: %w", err)
	}
	return caps, nil
}

// Healthy reports whether the worker at base answers /health 200.
func Healthy(ctx context.Context, hc *http.Client, base string) bool {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(c, http.MethodGet, base+wire.PathHealth, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func loopbackFor(bind string) string {
	if ip := net.ParseIP(bind); bind == "" || (ip != nil && ip.IsUnspecified()) {
		return wire.DefaultHost
	}
	return bind
}

// CheckModel fails early, with the fix, on a model path that cannot be a GGUF file. A
// FIFO, device or folder is refused before it is opened: opening a FIFO waits for a
// writer that may never come, and so would the start.
func CheckModel(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return &StartError{Kind: ErrModelLoad, ExitCode: -1, Err: err}
	}
	if !st.Mode().IsRegular() {
		return &StartError{Kind: ErrModelLoad, ExitCode: -1,
			Err: fmt.Errorf("%s is not a regular file but %s: choose a .gguf model file", path, fileKind(st.Mode()))}
	}
	// Non-blocking, in case the path was swapped for a FIFO since the Stat.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return &StartError{Kind: ErrModelLoad, ExitCode: -1, Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return &StartError{Kind: ErrModelLoad, ExitCode: -1, Err: fmt.Errorf("%s is not a regular file: choose a .gguf model file", path)}
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("GGUF")) {
		return &StartError{Kind: ErrModelLoad, ExitCode: -1, Err: fmt.Errorf("%s is not a GGUF file", path)}
	}
	return nil
}

// fileKind names what a non-regular file is, for people.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	default:
		return "a special file (" + m.Type().String() + ")"
	}
}

// LogFile is where the worker with this id logs.
func (s *Spawner) LogFile(id string) string { return filepath.Join(s.cfg.LogDir, id+".log") }
