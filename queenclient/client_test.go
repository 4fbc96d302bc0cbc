package queenclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// A Queen answering 503 then 200 is retried; a 409 is not, and comes back typed.
func TestRetriesBusyQueenAndTypesErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != wire.BearerPrefix+"tok" {
			wire.WriteError(w, wire.NewError(401, wire.CodeUnauthorized, "bad token"))
			return
		}
		switch r.URL.Path {
		case wire.PathHealth:
			if calls.Add(1) < 3 {
				wire.WriteError(w, wire.NewError(503, wire.CodeBusy, "busy"))
				return
			}
			wire.WriteJSON(w, 200, wire.QueenHealth{Status: "ok"})
		case wire.PathRegisterWorker:
			wire.WriteError(w, wire.NewError(409, wire.CodeWorkerConflict, "taken"))
		default:
			wire.WriteError(w, wire.NewError(404, wire.CodeUnknownWorker, "no"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok", Options{RetryWait: time.Millisecond, RetryMaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Health(ctx); err != nil || calls.Load() != 3 {
		t.Fatalf("health after two 503s: err %v, calls %d", err, calls.Load())
	}
	_, err = c.Register(ctx, wire.RegisterRequest{WorkerID: "w"})
	var apiErr *wire.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 409 || apiErr.Detail.Code != wire.CodeWorkerConflict {
		t.Fatalf("register conflict: %v", err)
	}
	if err := c.Deregister(ctx, "w"); err != nil {
		t.Fatalf("deregister of an unknown id should be fine: %v", err)
	}
	if _, err := c.Get(ctx, "w"); !IsNotFound(err) {
		t.Fatalf("get unknown: %v", err)
	}
	dead, _ := New("http://127.0.0.1:1", "", Options{Retries: -1})
	var ue *UnreachableError
	if _, err := dead.List(ctx); !errors.As(err, &ue) {
		t.Fatalf("unreachable queen: %v", err)
	}
	if _, err := New("127.0.0.1:7833", "", Options{}); !errors.Is(err, ErrBadURL) {
		t.Fatalf("bad url: %v", err)
	}
}
