// Package hive is the headless core of a Beekeeper machine: it ties the local registry,
// the spawner and the Queen sync together, and is exactly what both the command line
// (spawn/ps/stop/logs) and the desktop app drive.
package hive

import (
	"log/slog"
	"os"
	"time"

	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Entry is one worker in the local registry (see localregistry.Entry for the fields).
// Entry.URL() is the worker's base URL from this machine.
type Entry = localregistry.Entry

// State is a worker's lifecycle state: starting, ready, stopping, exited, crashed.
type State = localregistry.State

// SyncState is a worker's standing with the Queen: off, pending, registered, online, stale.
type SyncState = localregistry.SyncState

// Lifecycle and sync states, re-exported so callers import one package.
const (
	StateStarting = localregistry.StateStarting
	StateReady    = localregistry.StateReady
	StateStopping = localregistry.StateStopping
	StateExited   = localregistry.StateExited
	StateCrashed  = localregistry.StateCrashed

	SyncOff        = localregistry.SyncOff
	SyncPending    = localregistry.SyncPending
	SyncRegistered = localregistry.SyncRegistered
	SyncOnline     = localregistry.SyncOnline
	SyncStale      = localregistry.SyncStale
)

// Options configure a Hive. Zero values pick the defaults named on each field.
type Options struct {
	StateDir         string // registry and worker logs; default dirs.State()
	PortMin, PortMax int    // ports to pick from; default 8080..8200
	WorkerBinary     string // the beekeeper binary to run as `worker`; default os.Executable()
	LlamaLib         string // llama.cpp library folder handed to workers; default: the worker locates it
	QueenURL         string // "" = Queenless
	// OrderTTL is the idle TTL of the workers started for the Queen's spawn orders
	// (loaded on request): they stop after that long unused, and the next request
	// loads them again. 0 = they keep running.
	OrderTTL time.Duration
	// OrderTTLFor, when set, gives the idle TTL per model instead of OrderTTL (the app:
	// its Settings' default and per-model overrides); 0 = keep running.
	OrderTTLFor func(model string) time.Duration
	// MaxWorkers and MaxMemory bound the workers for spawn orders (0 = no bound): an
	// order that does not fit evicts least recently used idle order workers (budget.go).
	// MaxMemory counts every live worker's estimated memory; 10% of RAM is kept free
	// whatever the bounds.
	MaxWorkers int
	MaxMemory  uint64
	// RoomWait is how long an order that does not fit waits for a busy worker to go
	// idle before it fails with wire.CodeNoRoom; default 30s.
	RoomWait   time.Duration
	QueenToken string // bearer token for the Queen, also handed to workers (in their environment, never argv)
	SpawnedBy  string // spawned_by sent to the Queen; default "gui"
	HiveID     string // this machine's name in spawn orders; default DefaultHiveID()
	// ResolveModel maps a model name (as workers serve it) to a GGUF file on this
	// machine. Given it and a Queen, the hive takes the Queen's spawn orders for the
	// models it resolves (docs/protocol.md §4.7); nil: it takes none.
	ResolveModel func(name string) (path string, ok bool)
	// ListModels lists the GGUF files ResolveModel resolves (models.List). Given it, the
	// hive reports them to the Queen with their size and estimated memory, so the
	// Queen's gateway can load them on request and list them (wire/hives.go).
	ListModels         func() []string
	BindHost           string // override the worker bind address (default per docs/protocol.md §3)
	AdvertiseHost      string // override the host advertised to a remote Queen
	StopWorkersOnClose bool   // Close() stops workers by default when true
	// Passive runs no background Queen sync (short-lived commands: spawn/ps/stop/logs).
	// Spawn still registers at once and Stop still deregisters; the app's hive syncs the rest.
	Passive       bool
	ReadyTimeout  time.Duration // no load progress for this long = failed start; default 60s
	SyncInterval  time.Duration // periodic full sync with the Queen; default 3s (jittered)
	StatsInterval time.Duration // one ticker samples CPU/RSS/threads of every worker; default 1s
	MaxLogBytes   int64         // per-worker log file bound; default 4 MiB
	Logger        *slog.Logger  // default slog.Default()
}

// SpawnRequest asks for one worker.
type SpawnRequest struct {
	ModelPath  string
	WorkerType string        // default "llm"
	CtxSize    int           // 0 = the worker's default
	Threads    int           // 0 = the worker's default
	GPULayers  string        // "auto" or a layer count for --gpu-layers; "" = the worker's default
	TTL        time.Duration // the worker stops after this long idle (--ttl); 0 = keeps running
	Port       int           // 0 = first free port in the range; a taken explicit port is ErrPortTaken
	// RegisterWithQueen registers the worker with the configured Queen at once (fast
	// path) when true; the background sync registers it anyway while a Queen is set.
	RegisterWithQueen bool
	// SpawnOrder is the Queen's spawn order the worker is for (the hive sets it when it
	// serves orders); it is recorded and sent with every registration of the worker.
	SpawnOrder string
}

// SpawnProgress reports a spawn's phases to the caller's progress func.
type SpawnProgress = spawner.Progress

// Spawn phases.
const (
	PhaseStarting = spawner.PhaseStarting // process started on Port
	PhaseLoading  = spawner.PhaseLoading  // model loading, Fraction 0..1
	PhaseReady    = spawner.PhaseReady
	PhaseRetrying = spawner.PhaseRetrying // port turned out taken, trying the next
)

// Typed spawn errors: check with errors.Is; errors.As(err, *StartError) gives the exit
// code and the last log lines.
var (
	ErrRuntimeMissing = spawner.ErrRuntimeMissing // fix: `beekeeper runtime install`
	ErrModelLoad      = spawner.ErrModelLoad      // not a GGUF / llama.cpp refused it
	ErrPortTaken      = spawner.ErrPortTaken      // the explicit port is in use
	ErrNoFreePort     = spawner.ErrNoFreePort     // the whole range is in use
	ErrNotReady       = spawner.ErrNotReady       // no progress before the deadline
	ErrWrongWorker    = spawner.ErrWrongWorker    // another process answers on that port
	ErrExited         = spawner.ErrExited         // exited during start for another reason
	ErrBadArgs        = spawner.ErrBadArgs
)

// StartError is the error of a failed spawn: Kind (one of the Err* above), exit code,
// last log lines.
type StartError = spawner.StartError

// EventKind says what happened to an entry.
type EventKind string

// Event kinds.
const (
	EventAdded   EventKind = "added"
	EventUpdated EventKind = "updated"
	EventRemoved EventKind = "removed"
	EventQueen   EventKind = "queen" // QueenStatus changed; Entry is zero
)

// Event is one registry change delivered to subscribers.
type Event struct {
	Kind  EventKind
	Entry Entry
}

// Stats is one sample of a live worker's resource use.
type Stats = spawner.Stats

// QueenStatus is the hive's view of its Queen.
type QueenStatus struct {
	URL         string    // "" = Queenless
	Reachable   bool      // the last health probe or sync succeeded
	LastContact time.Time // last successful exchange
	LastError   string    // the last failure, for people
	Registered  int       // live local workers the Queen knows
	Pending     int       // live local workers not registered yet
	OrdersAs    string    // the hive id the Queen's spawn orders reach this hive by; "" = takes none
}

// DefaultHiveID is "hive-<hostname>", the name spawn orders address this machine by.
func DefaultHiveID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "hive-" + wire.IDSafe(host)
}
