package wire

import "time"

// RegisterRequest is the body of POST /v1/queen/register-worker. The spawner sends it
// (parent-child registration) and a worker sends the same when a Queen forgot it.
type RegisterRequest struct {
	WorkerID   string `json:"worker_id"`
	Hostname   string `json:"hostname"`
	Port       int    `json:"port"`
	WorkerType string `json:"worker_type"`
	Model      string `json:"model"`
	SpawnedBy  string `json:"spawned_by"`
	// SpawnOrderID, when the worker was started for a spawn order (docs/protocol.md §4.7),
	// completes that order at the Queen.
	SpawnOrderID string `json:"spawn_order_id,omitempty"`
	// WorkerKey is the worker process's secret identity key (docs/security.md). The
	// Queen binds the id to the first key it sees; later registrations, heartbeats and
	// deregistrations of the id must carry the same key (409 worker_key_mismatch).
	WorkerKey string `json:"worker_key,omitempty"`
}

// RegisterResponse answers a registration.
type RegisterResponse struct {
	WorkerID            string      `json:"worker_id"`
	State               WorkerState `json:"state"`
	HeartbeatIntervalMS int64       `json:"heartbeat_interval_ms"`
}

// Worker statuses a heartbeat reports.
const (
	StatusReady   = "ready"
	StatusBusy    = "busy"
	StatusLoading = "loading"
)

// Heartbeat is the body of POST /v1/worker-heartbeat.
type Heartbeat struct {
	WorkerID string `json:"worker_id"`
	Status   string `json:"status"`
	// WorkerKey proves the heartbeat comes from the worker the id is bound to.
	WorkerKey string `json:"worker_key,omitempty"`
	// Optional load figures, used by the Queen to route to the least busy worker.
	ActiveRequests int `json:"active_requests,omitempty"`
	QueuedRequests int `json:"queued_requests,omitempty"`
	Slots          int `json:"slots,omitempty"`
	// KV cache use in tokens (held, and what it holds).
	KVCacheTokens   int `json:"kv_cache_tokens,omitempty"`
	KVCacheCapacity int `json:"kv_cache_capacity,omitempty"`
	// What the model runs on ("cpu" or the GPU), the llama.cpp build, and the GPU's
	// free memory when the worker loaded.
	Device          string `json:"device,omitempty"`
	Runtime         string `json:"runtime,omitempty"`
	DeviceFreeBytes uint64 `json:"device_free_bytes,omitempty"`
}

// HeartbeatResponse answers a heartbeat; the Queen owns the interval.
type HeartbeatResponse struct {
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
}

// WorkerState is a worker's state at the Queen.
type WorkerState string

// The Queen's worker states, in the order a silent worker passes through them.
const (
	StateRegistered WorkerState = "registered" // known, no heartbeat yet
	StateOnline     WorkerState = "online"     // heartbeat within the TTL
	StateStale      WorkerState = "stale"      // no heartbeat for StaleAfter intervals
	StateOffline    WorkerState = "offline"    // no heartbeat for OfflineAfter intervals
)

// Worker is the Queen's record of one worker (GET /v1/workers, /v1/workers/{id}).
type Worker struct {
	WorkerID        string        `json:"worker_id"`
	Hostname        string        `json:"hostname"`
	Port            int           `json:"port"`
	URL             string        `json:"url"`
	WorkerType      string        `json:"worker_type"`
	Model           string        `json:"model"`
	SpawnedBy       string        `json:"spawned_by"`
	State           WorkerState   `json:"state"`
	Status          string        `json:"status,omitempty"`
	Capabilities    *Capabilities `json:"capabilities,omitempty"`
	RegisteredAt    time.Time     `json:"registered_at"`
	LastHeartbeatAt *time.Time    `json:"last_heartbeat_at"`
	ActiveRequests  int           `json:"active_requests,omitempty"`
	// From the worker's last heartbeat: its sequences, KV cache use in tokens, what the
	// model runs on ("cpu" or the GPU), the llama.cpp build, and the GPU's free memory.
	Slots           int    `json:"slots,omitempty"`
	KVCacheTokens   int    `json:"kv_cache_tokens,omitempty"`
	KVCacheCapacity int    `json:"kv_cache_capacity,omitempty"`
	Device          string `json:"device,omitempty"`
	Runtime         string `json:"runtime,omitempty"`
	DeviceFreeBytes uint64 `json:"device_free_bytes,omitempty"`
}

// WorkerList is the body of GET /v1/workers.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}

// Event types of GET /v1/events.
const (
	EventSnapshot   = "snapshot" // one per worker known when the stream opens
	EventRegistered = "registered"
	EventOnline     = "online"
	EventStale      = "stale"
	EventOffline    = "offline"
	EventRemoved    = "removed"
	EventUpdated    = "updated" // capabilities or status changed, state did not
)

// Event is one Server-Sent Event of GET /v1/events; the SSE "event:" field carries Type.
type Event struct {
	Type   string    `json:"type"`
	Worker Worker    `json:"worker"`
	At     time.Time `json:"at"`
}

// QueenHealth is the body of the Queen's GET /health.
type QueenHealth struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}
