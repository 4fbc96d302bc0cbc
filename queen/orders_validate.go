package queen

// Validation of the spawn-order bodies and queries (the book is orders.go, the
// handlers orders_handlers.go).

import (
	"net/http"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/beekeeper-hive/beekeeper/wire"
)

var (
	orderRequestFields = jsonFields(reflect.TypeFor[wire.SpawnOrderRequest]())
	claimFields        = jsonFields(reflect.TypeFor[wire.SpawnClaim]())
	resultFields       = jsonFields(reflect.TypeFor[wire.SpawnResult]())
)

func decodeOrderRequest(body []byte) (wire.SpawnOrderRequest, error) {
	var req wire.SpawnOrderRequest
	if err := decodeStrict(body, &req, orderRequestFields); err != nil {
		return req, err
	}
	switch {
	case req.Model == "":
		return req, invalidField("model", "is required (the name workers serve it under, e.g. %q)", "stories260K")
	case len(req.Model) > maxModelLen || hasControl(req.Model):
		return req, invalidField("model", "must be 1..%d printable characters", maxModelLen)
	}
	if req.WorkerType == "" {
		req.WorkerType = wire.DefaultWorkerType
	}
	if len(req.WorkerType) > maxTypeLen || !tokenPattern.MatchString(req.WorkerType) {
		return req, invalidField("worker_type", "must be 1..%d characters of [A-Za-z0-9._-]", maxTypeLen)
	}
	if req.Hive != "" {
		if err := validateHive("hive", req.Hive); err != nil {
			return req, err
		}
	}
	if req.CtxSize < 0 || req.CtxSize > maxCtxSize {
		return req, invalidField("ctx_size", "%d is outside 0..%d (0 = the worker's default)", req.CtxSize, maxCtxSize)
	}
	if req.OrderID != "" && !validOrderID(req.OrderID) {
		return req, invalidField("order_id", "must be 1..%d characters of [A-Za-z0-9._-]", maxOrderIDLen)
	}
	return req, nil
}

func validateHive(field, hive string) error {
	switch {
	case hive == "":
		return invalidField(field, "is required (the hive's id, e.g. %q)", "hive-myhost")
	case len(hive) > maxSpawnedBy || !tokenPattern.MatchString(hive):
		return invalidField(field, "must be 1..%d characters of [A-Za-z0-9._-]", maxSpawnedBy)
	}
	return nil
}

func decodeClaim(body []byte) (wire.SpawnClaim, error) {
	var c wire.SpawnClaim
	if err := decodeStrict(body, &c, claimFields); err != nil {
		return c, err
	}
	if len(c.Token) > maxClaimToken {
		return c, invalidField("claim_token", "is longer than %d characters", maxClaimToken)
	}
	return c, validateHive("hive", c.Hive)
}

func decodeResult(body []byte) (wire.SpawnResult, error) {
	var res wire.SpawnResult
	if err := decodeStrict(body, &res, resultFields); err != nil {
		return res, err
	}
	if err := validateHive("hive", res.Hive); err != nil {
		return res, err
	}
	if len(res.Token) > maxClaimToken {
		return res, invalidField("claim_token", "is longer than %d characters", maxClaimToken)
	}
	switch {
	case res.WorkerID == "" && res.Error == "":
		return res, invalidField("worker_id", "give worker_id (the worker runs) or error (it could not start)")
	case res.WorkerID != "" && res.Error != "":
		return res, invalidField("error", "give worker_id or error, not both")
	case res.ErrorCode != "" && (res.Error == "" || res.ErrorCode != wire.CodeNoRoom):
		return res, invalidField("error_code", "is %q or absent, and only with error", wire.CodeNoRoom)
	case res.WorkerID != "":
		if err := validateWorkerID(res.WorkerID); err != nil {
			return res, err
		}
	}
	res.Error = clipUTF8(res.Error, maxOrderError)
	return res, nil
}

// clipUTF8 cuts s to at most n bytes without splitting a character.
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// parseOrderQuery reads GET /v1/spawn-orders's state, hive and wait.
func parseOrderQuery(r *http.Request) (orderFilter, time.Duration, error) {
	q := r.URL.Query()
	f := orderFilter{state: wire.SpawnOrderState(q.Get("state")), hive: q.Get("hive")}
	switch f.state {
	case "", wire.OrderPending, wire.OrderTaken, wire.OrderDone, wire.OrderFailed:
	default:
		return f, 0, invalidField("state", "%q is not one of pending, taken, done, failed", f.state)
	}
	if q.Has("hive") {
		if err := validateHive("hive", f.hive); err != nil {
			return f, 0, err
		}
		if f.state != "" && f.state != wire.OrderPending {
			return f, 0, invalidField("state", "with hive, the listing is of the pending orders that hive may take: leave state out or use pending")
		}
	}
	var wait time.Duration
	if raw := q.Get("wait"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil {
			secs, aerr := strconv.Atoi(raw) // plain seconds are fine too
			if aerr != nil {
				return f, 0, invalidField("wait", "%q is not a duration such as 25s", raw)
			}
			d = time.Duration(secs) * time.Second
		}
		if d < 0 {
			return f, 0, invalidField("wait", "%q is negative", raw)
		}
		wait = min(d, maxOrderWait)
	}
	if raw := q.Get("since"); raw != "" {
		v, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return f, 0, invalidField("since", "%q is not a version from an earlier answer", raw)
		}
		f.since, f.hasSince = v, true
	}
	return f, wait, nil
}
