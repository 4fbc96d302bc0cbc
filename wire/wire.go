// Package wire owns the JSON types and constants that the worker, the spawner, the Queen
// client and the mini Queen all speak, so the sides of the contract cannot drift apart.
package wire

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Version is the Beekeeper version reported by workers and the Queen.
const Version = "0.1.0"

// Defaults shared by every side.
const (
	DefaultQueenAddr         = "127.0.0.1:7833"
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultPortMin           = 8080
	DefaultPortMax           = 8200
	DefaultWorkerType        = "llm"
	DefaultHost              = "127.0.0.1"

	// StaleAfter and OfflineAfter count missed heartbeat intervals.
	StaleAfter   = 3
	OfflineAfter = 6

	// MaxRegistrationBody bounds registration and heartbeat bodies at the Queen.
	MaxRegistrationBody = 64 << 10
	// MaxCapabilitiesBody bounds what the Queen reads of a worker's /capabilities.
	MaxCapabilitiesBody = 64 << 10
	// MaxWorkerIDLen bounds worker ids.
	MaxWorkerIDLen = 128
)

// HTTP paths of the worker and the Queen.
const (
	PathHealth         = "/health"
	PathCapabilities   = "/capabilities"
	PathModels         = "/v1/models"
	PathChat           = "/v1/chat/completions"
	PathCompletions    = "/v1/completions"
	PathRegisterWorker = "/v1/queen/register-worker"
	PathHeartbeat      = "/v1/worker-heartbeat"
	PathWorkers        = "/v1/workers"
	PathEvents         = "/v1/events"
	PathMetrics        = "/metrics"
	// PathAdopt is the worker's POST that hands it a Queen (AdoptRequest).
	PathAdopt = "/adopt"
)

// Environment variables that carry secrets, so that no secret is on a command line
// (where any local user reads it in ps).
const (
	// EnvAPIToken is a worker's bearer token: required on its endpoints but /health and
	// presented to its Queen. A spawner hands its Queen token to its workers through it.
	EnvAPIToken = "BEEKEEPER_API_TOKEN"
	// EnvQueenToken is the Queen's token for `beekeeper queen` and the commands that
	// talk to a Queen (spawn, hive, order, ps).
	EnvQueenToken = "BEEKEEPER_QUEEN_TOKEN"
	// EnvWorkerKey, when set, is the worker's identity key (see WorkerKey fields);
	// otherwise the worker makes one at start.
	EnvWorkerKey = "BEEKEEPER_WORKER_KEY"
)

// Worker process exit codes, one per start-up failure the spawner acts on.
const (
	ExitOK             = 0
	ExitFailure        = 1 // anything not listed below
	ExitBadArgs        = 2
	ExitPortInUse      = 3 // the spawner retries on the next free port
	ExitModelLoad      = 4 // missing file, not GGUF, or llama.cpp refused it
	ExitRuntimeMissing = 5 // llama.cpp shared libraries not found
)

// ExitReason names a worker exit code for people.
func ExitReason(code int) string {
	switch code {
	case ExitOK:
		return "exited normally"
	case ExitBadArgs:
		return "bad arguments"
	case ExitPortInUse:
		return "port already in use"
	case ExitModelLoad:
		return "model failed to load"
	case ExitRuntimeMissing:
		return "llama.cpp runtime not found"
	default:
		return fmt.Sprintf("exit code %d", code)
	}
}

// SpawnedByGUI is the spawned_by value of the desktop app; headless hives use "hive-<id>".
const SpawnedByGUI = "gui"

var workerIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidWorkerID reports whether id is acceptable as a worker id. "." and ".." are not:
// an id names files (the worker's key file) and URL path segments, where they mean
// something else.
func ValidWorkerID(id string) bool {
	return id != "." && id != ".." && id != "" && len(id) <= MaxWorkerIDLen && workerIDPattern.MatchString(id)
}

// WorkerID is the id a spawner gives a worker: worker-<type>-<port> when the advertised
// host is loopback, worker-<type>-<host>-<port> when it is not, so two machines never
// collide at one Queen.
func WorkerID(workerType, advertiseHost string, port int) string {
	if IsLoopback(advertiseHost) {
		return fmt.Sprintf("worker-%s-%d", workerType, port)
	}
	return fmt.Sprintf("worker-%s-%s-%d", workerType, IDSafe(advertiseHost), port)
}

// IDSafe maps s onto the characters an id may hold ([A-Za-z0-9._-]), replacing any other
// (the ':' of an IPv6 address, say) with '-'.
func IDSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			b[i] = '-'
		}
	}
	return string(b)
}

// IsLoopback reports whether host (a name or an address) is this machine's loopback.
func IsLoopback(host string) bool {
	if host == "" || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ModelName is the name a worker serves a model file under: its base name without the
// .gguf extension ("stories260K" for .../stories260K.gguf). /v1/models, registration and
// the Queen's routing all use it.
func ModelName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(strings.TrimSuffix(base, ".gguf"), ".GGUF")
}
