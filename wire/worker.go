package wire

import "time"

// Health is the body of a worker's GET /health: 503 {"status":"loading","progress":p}
// while the model loads, 200 {"status":"ok"} once it can serve (llama-server's convention).
type Health struct {
	Status   string   `json:"status"`
	Progress *float64 `json:"progress,omitempty"`
}

// Health statuses.
const (
	HealthOK      = "ok"
	HealthLoading = "loading"
)

// Capabilities is the body of a worker's GET /capabilities.
type Capabilities struct {
	WorkerID      string    `json:"worker_id"`
	WorkerType    string    `json:"worker_type"`
	Model         string    `json:"model"`
	ModelPath     string    `json:"model_path"`
	Backend       string    `json:"backend"`
	Device        string    `json:"device"`
	ContextLength int       `json:"context_length"`
	Parallel      int       `json:"parallel"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	QueenURL      string    `json:"queen_url"`
}

// QueryQueenURL is the /capabilities query parameter by which a Queen hands a worker its URL.
const QueryQueenURL = "queen_url"
