package wire

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// Spawn orders (docs/protocol.md §4.7): someone asks the Queen for a worker serving a model; a
// hive that has the model takes the order, spawns the worker, and the worker's
// registration completes the order. The hive pulls orders from the Queen, so a hive
// behind NAT or a firewall can serve them.
//
//	POST /v1/spawn-orders                    {model, worker_type?, hive?, ctx_size?} → 202 SpawnOrder
//	GET  /v1/spawn-orders[?state=S][&hive=H][&wait=25s][&since=V]
//	                                         → {"orders": [...], "version": V}; with hive=H,
//	                                           the pending orders H may take; wait long-polls
//	                                           for one, or with since for any change after V
//	GET  /v1/spawn-orders/{id}               → SpawnOrder
//	DELETE /v1/spawn-orders/{id}             → cancels a pending order (409 once taken)
//	POST /v1/spawn-orders/{id}/claim         {hive, claim_token} → 200 SpawnOrder with lease_ms
//	                                           (taken, or renewed by the holder's token);
//	                                           409 taken by another hive or ended
//	POST /v1/spawn-orders/{id}/result        {hive, claim_token, worker_id} or
//	                                         {hive, claim_token, error} → 200 SpawnOrder
//
// A registration that carries spawn_order_id completes that order too, so an order is
// done even when the hive dies between spawning and reporting.
const PathSpawnOrders = "/v1/spawn-orders"

// SpawnOrderState is where an order stands.
type SpawnOrderState string

// Spawn order states: pending → taken → done | failed; a taken order whose hive stops
// renewing its lease goes back to pending.
const (
	OrderPending SpawnOrderState = "pending"
	OrderTaken   SpawnOrderState = "taken"
	OrderDone    SpawnOrderState = "done"
	OrderFailed  SpawnOrderState = "failed"
)

// SpawnOrderRequest is the body of POST /v1/spawn-orders.
type SpawnOrderRequest struct {
	// OrderID, when the client picks it, makes the request idempotent: the same id and
	// the same order again answer the order already made (a retry after a lost answer
	// orders nothing twice); the same id for a different order is 409 order_conflict.
	OrderID    string `json:"order_id,omitempty"`
	Model      string `json:"model"`                 // the name workers serve it under (ModelName)
	WorkerType string `json:"worker_type,omitempty"` // default DefaultWorkerType
	Hive       string `json:"hive,omitempty"`        // only this hive may take it (its id: hive-<hostname> unless set); "" = any
	CtxSize    int    `json:"ctx_size,omitempty"`    // 0 = the worker's default
}

// SpawnOrder is the Queen's record of one order.
type SpawnOrder struct {
	OrderID    string          `json:"order_id"`
	Model      string          `json:"model"`
	WorkerType string          `json:"worker_type"`
	Hive       string          `json:"hive,omitempty"`
	CtxSize    int             `json:"ctx_size,omitempty"`
	State      SpawnOrderState `json:"state"`
	TakenBy    string          `json:"taken_by,omitempty"`   // the hive holding (or that held) it
	WorkerID   string          `json:"worker_id,omitempty"`  // done: the worker that serves it
	Error      string          `json:"error,omitempty"`      // failed: why, for people
	ErrorCode  string          `json:"error_code,omitempty"` // failed: SpawnResult.ErrorCode
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	// LeaseMS, in a claim's answer, is how long the claim holds unless renewed: the
	// holder renews well within it.
	LeaseMS int64 `json:"lease_ms,omitempty"`
}

// Ended reports whether the order is done or failed.
func (o SpawnOrder) Ended() bool { return o.State == OrderDone || o.State == OrderFailed }

// SpawnOrderList answers GET /v1/spawn-orders.
type SpawnOrderList struct {
	Orders []SpawnOrder `json:"orders"`
	// Version counts the Queen's order changes. A hive passes it back as since=V: its
	// next long-poll then waits for a change after this answer instead of being answered
	// at once with the pending orders it just declined (it lacks their model).
	Version uint64 `json:"version"`
}

// SpawnClaim is the body of POST /v1/spawn-orders/{id}/claim.
type SpawnClaim struct {
	Hive string `json:"hive"`
	// Token tells apart two hives under one name (the app and `beekeeper hive` on one
	// machine, or cloned machines): a claim renews only the holder's own lease. Each
	// hive picks a random one when it opens.
	Token string `json:"claim_token,omitempty"`
}

// SpawnResult is the body of POST /v1/spawn-orders/{id}/result: WorkerID when the worker
// runs, Error when the hive could not start it.
type SpawnResult struct {
	Hive     string `json:"hive"`
	Token    string `json:"claim_token,omitempty"` // the claim's token
	WorkerID string `json:"worker_id,omitempty"`
	Error    string `json:"error,omitempty"`
	// ErrorCode classifies a failure for programs: CodeNoRoom, or "" for any other.
	ErrorCode string `json:"error_code,omitempty"`
}

// Error codes of the spawn-order endpoints (APIError.Code).
const (
	CodeOrderTaken    = "order_taken"    // claimed by another hive
	CodeOrderEnded    = "order_ended"    // done, failed or cancelled
	CodeOrderConflict = "order_conflict" // an order_id already used for another order
	// CodeNoRoom: the hive's memory or worker budget had no room for the model, and
	// every worker it could have evicted was busy. Worth retrying soon.
	CodeNoRoom = "no_room"
)

// NewOrderID is a fresh random spawn order id: "order-" and 16 URL-safe characters from
// 96 random bits. The Queen makes one when the client did not.
func NewOrderID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it panics first)
	return "order-" + base64.RawURLEncoding.EncodeToString(b[:])
}
