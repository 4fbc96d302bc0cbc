package chat

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// ErrorKind sorts a failed answer by the way out the UI offers.
type ErrorKind string

// Error kinds.
const (
	ErrWorkerGone       ErrorKind = "worker_gone"       // offer to respawn the model
	ErrQueenUnreachable ErrorKind = "queen_unreachable" // point at the Queen screen
	ErrContextExceeded  ErrorKind = "context_exceeded"  // offer a new chat
	ErrNoWorker         ErrorKind = "no_worker"         // the Queen has nobody serving the model
	ErrBusy             ErrorKind = "busy"              // retry
	ErrAuth             ErrorKind = "auth"              // token
	ErrOther            ErrorKind = "other"
)

// Explain turns a Stream error into its kind and a sentence for the conversation that
// names the way out.
func Explain(err error, t Target) (ErrorKind, string) {
	var (
		ue  *UnreachableError
		ce  *ContextExceededError
		api *wire.APIError
	)
	switch {
	case errors.As(err, &ue) && t.Kind == TargetQueen:
		return ErrQueenUnreachable, fmt.Sprintf("The Queen at %s is unreachable (%v). Check the Queen screen, or chat with a local worker directly.", t.BaseURL, ue.Err)
	case errors.As(err, &ue) && ue.During == "stream":
		return ErrWorkerGone, fmt.Sprintf("Worker %s stopped in the middle of the answer. Respawn %s to continue.", t.WorkerID, t.Model)
	case errors.As(err, &ue):
		return ErrWorkerGone, fmt.Sprintf("Worker %s is gone (%s does not answer). Respawn %s to continue.", t.WorkerID, t.BaseURL, t.Model)
	case errors.As(err, &ce):
		if n := ce.Over(); n > 0 {
			return ErrContextExceeded, fmt.Sprintf("This conversation is %d tokens longer than the model's context of %d tokens. Start a new chat, or regenerate with a shorter history.", n, ce.ContextLength)
		}
		if ce.Known() {
			return ErrContextExceeded, fmt.Sprintf("This conversation fills the model's whole context of %d tokens, leaving no room for the answer. Start a new chat.", ce.ContextLength)
		}
		return ErrContextExceeded, fmt.Sprintf("This conversation is longer than the model's context (%s). Start a new chat.", ce.API.Detail.Message)
	case errors.As(err, &api):
		switch {
		case api.Detail.Code == wire.CodeModelNotFound || api.Detail.Code == wire.CodeNoWorkerOnline:
			return ErrNoWorker, fmt.Sprintf("The Queen has no online worker serving %s (%s). Spawn one from the Models or Workers screen.", t.Model, api.Detail.Message)
		case api.Status == http.StatusUnauthorized || api.Status == http.StatusForbidden:
			return ErrAuth, fmt.Sprintf("The target refused the token (%s). Set the cluster token on the Queen screen.", api.Detail.Message)
		case api.Status == http.StatusTooManyRequests || api.Status == http.StatusServiceUnavailable:
			return ErrBusy, fmt.Sprintf("The target is busy (%s). Regenerate in a moment.", api.Detail.Message)
		}
		return ErrOther, fmt.Sprintf("The target refused the request: %s.", api.Detail.Message)
	}
	return ErrOther, err.Error()
}
