package spawner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Kinds of start failure; a *StartError matches its Kind with errors.Is.
var (
	ErrRuntimeMissing = errors.New("llama.cpp runtime not found: run `beekeeper runtime install`")
	ErrModelLoad      = errors.New("model failed to load: check the file is a GGUF model that llama.cpp supports")
	ErrPortTaken      = errors.New("port already in use: pick another port or leave it on auto")
	ErrNoFreePort     = errors.New("no free port in the range: widen the port range or stop some workers")
	ErrNotReady       = errors.New("worker made no progress before the deadline")
	ErrWrongWorker    = errors.New("another process answers on the worker's port")
	ErrExited         = errors.New("worker exited during start")
	ErrBadArgs        = errors.New("worker rejected its arguments")
)

// StartError is a failed start: which Kind, the exit code when the process exited, and
// the last lines of its log so the person can see why.
type StartError struct {
	Kind      error // one of the Err* values above
	Port      int
	ExitCode  int // -1 when the process did not exit
	LastLines []string
	Err       error // the underlying cause, if any
}

func (e *StartError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Port != 0 {
		fmt.Fprintf(&b, " (port %d)", e.Port)
	}
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, "; worker %s", wire.ExitReason(e.ExitCode))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if len(e.LastLines) > 0 {
		b.WriteString("\nlast log lines:\n  ")
		b.WriteString(strings.Join(e.LastLines, "\n  "))
	}
	return b.String()
}

// Is matches the Kind, so errors.Is(err, ErrModelLoad) works through wrapping.
func (e *StartError) Is(target error) bool { return target == e.Kind }

func (e *StartError) Unwrap() error { return e.Err }

// kindForExit maps a worker exit code to the Kind of start failure.
func kindForExit(code int) error {
	switch code {
	case wire.ExitPortInUse:
		return ErrPortTaken
	case wire.ExitModelLoad:
		return ErrModelLoad
	case wire.ExitRuntimeMissing:
		return ErrRuntimeMissing
	case wire.ExitBadArgs:
		return ErrBadArgs
	default:
		return ErrExited
	}
}
