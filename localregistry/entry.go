package localregistry

import "time"

// State is a worker's lifecycle state on this machine.
type State string

// Worker states. A worker is live while starting or ready.
const (
	StateStarting State = "starting" // process started, model loading
	StateReady    State = "ready"    // /health answered 200 and /capabilities named its id
	StateStopping State = "stopping" // stop requested, waiting for the process to go
	StateExited   State = "exited"   // stopped by the user, or gone cleanly
	StateCrashed  State = "crashed"  // died without being asked to
)

// Live reports whether a worker in state s is (believed to be) running.
func (s State) Live() bool { return s == StateStarting || s == StateReady || s == StateStopping }

// known reports whether s is one of the states above.
func (s State) known() bool { return s.Live() || s == StateExited || s == StateCrashed }

// transitions lists the states each state may change to; "" is a new entry (or a new
// process under an existing id). Staying in a state is always allowed (load progress, a
// late exit code, the Queen sync's fields). exited is final.
var transitions = map[State][]State{
	// A claim (port reserved, pid 0, then its pid), or a worker found serving (adopted).
	"":            {StateStarting, StateReady},
	StateStarting: {StateReady, StateStopping, StateExited, StateCrashed},
	// exited: gone unasked with exit code 0, or stopped by another hive on the registry.
	StateReady: {StateStopping, StateExited, StateCrashed},
	// Back to starting or ready: the stop failed and the worker runs on.
	StateStopping: {StateExited, StateCrashed, StateStarting, StateReady},
	StateExited:   nil,
	// The parent's reap: a clean exit another hive could only see as a death.
	StateCrashed: {StateExited},
}

// CanTransition reports whether an entry may go from state from to state to.
func CanTransition(from, to State) bool {
	if from == to {
		return from.known()
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// SameProcess reports whether e and o record one process: the same pid, and the same
// start time where both know it (a pid is reused; a pid and its start time are not).
func (e Entry) SameProcess(o Entry) bool {
	return e.PID == o.PID && (e.ProcessStart == 0 || o.ProcessStart == 0 || e.ProcessStart == o.ProcessStart)
}

// Claimed reports whether the entry is a claim whose process has not started (or not yet
// been recorded): its port is reserved, its pid unknown.
func (e Entry) Claimed() bool { return e.PID == 0 && e.State == StateStarting }

// SyncState is where a worker stands with the Queen.
type SyncState string

// Queen sync states.
const (
	SyncOff        SyncState = "off"        // no Queen configured
	SyncPending    SyncState = "pending"    // the Queen does not know it yet (or is unreachable)
	SyncRegistered SyncState = "registered" // the Queen accepted the registration, no heartbeat yet
	SyncOnline     SyncState = "online"     // the Queen sees its heartbeats
	SyncStale      SyncState = "stale"      // the Queen misses its heartbeats
)

// Entry is one worker this machine spawned. Every field is persisted.
type Entry struct {
	ID            string    `json:"id"`
	PID           int       `json:"pid"`
	ProcessStart  int64     `json:"process_start_ms"` // gopsutil CreateTime: pid + this identify the process
	Port          int       `json:"port"`
	BindHost      string    `json:"bind_host"`
	AdvertiseHost string    `json:"advertise_host"`
	Model         string    `json:"model"`
	ModelPath     string    `json:"model_path"`
	WorkerType    string    `json:"worker_type"`
	SpawnedBy     string    `json:"spawned_by"`
	CtxSize       int       `json:"ctx_size,omitempty"`
	Threads       int       `json:"threads,omitempty"`
	GPULayers     string    `json:"gpu_layers,omitempty"` // --gpu-layers as given; "" = the worker's default
	TTL           string    `json:"ttl,omitempty"`        // --ttl as given; "" = keeps running
	StartedAt     time.Time `json:"started_at"`
	LogFile       string    `json:"log_file"`
	State         State     `json:"state"`
	ExitCode      *int      `json:"exit_code,omitempty"` // nil while live, or when unknown (an adopted worker died)
	ExitReason    string    `json:"exit_reason,omitempty"`
	LoadProgress  float64   `json:"load_progress"` // 0..1 while starting, 1 once ready
	Sync          SyncState `json:"queen_sync"`
	QueenURL      string    `json:"queen_url,omitempty"` // the Queen Sync refers to
	SyncError     string    `json:"queen_sync_error,omitempty"`
	SpawnOrder    string    `json:"spawn_order,omitempty"` // the Queen's spawn order it was started for
	// ClaimPID and ClaimStart name the process that claimed the entry (a hive, in the app
	// or a `beekeeper spawn`). While PID is 0 (claimed, not started yet) the claim holds
	// the port only as long as that process runs.
	ClaimPID   int   `json:"claim_pid,omitempty"`
	ClaimStart int64 `json:"claim_start_ms,omitempty"`
}

// URL is the worker's base URL as this machine reaches it.
func (e Entry) URL() string {
	host := e.BindHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + joinHostPort(host, e.Port)
}

// AdvertisedURL is the worker's base URL as the Queen reaches it.
func (e Entry) AdvertisedURL() string {
	return "http://" + joinHostPort(e.AdvertiseHost, e.Port)
}
