package spawner

import "time"

// Phase is a step of a start.
type Phase string

// Start phases, in order.
const (
	PhaseStarting Phase = "starting" // process started on Port
	PhaseRetrying Phase = "retrying" // the port turned out taken; trying the next one
	PhaseLoading  Phase = "loading"  // model loading; Fraction 0..1
	PhaseReady    Phase = "ready"
)

// Progress is one report of a start in progress.
type Progress struct {
	Phase    Phase
	WorkerID string
	Port     int
	PID      int
	Fraction float64 // load progress 0..1
}

// Stats is one sample of a worker process's resource use.
type Stats struct {
	PID        int
	CPUPercent float64 // of one core, since the previous sample
	RSSBytes   uint64
	Threads    int32
	SampledAt  time.Time
}
