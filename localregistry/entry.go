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
