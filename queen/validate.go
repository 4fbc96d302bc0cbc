package queen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/internal/workerkey"
	"github.com/beekeeper-hive/beekeeper/wire"
)

const (
	maxHostnameLen = 253
	maxTypeLen     = 64
	maxModelLen    = 256
	maxSpawnedBy   = 128
)

var (
	tokenPattern    = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)
)

func invalidField(field, format string, args ...any) *wire.APIError {
	e := wire.NewError(http.StatusBadRequest, wire.CodeInvalidField, "%s: %s", field, fmt.Sprintf(format, args...))
	e.Detail.Param = field
	return e
}

// readBody reads a JSON request body of at most limit bytes: 415 when it does not say
// it is JSON (a web page can post text/plain anywhere), 413 beyond the limit, 408 when
// it trickles in slower than the body deadline.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	if err := httpguard.RequireJSON(r); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, wire.NewError(http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge,
			"request body is over %d bytes", limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, wire.NewError(http.StatusRequestTimeout, wire.CodeTimeout,
			"the request body did not arrive within the server's --body-timeout: send it at once")
	}
	if err != nil {
		return nil, wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "reading the request body: %v", err)
	}
	return body, nil
}

// decodeStrict decodes one JSON object into v: unknown fields, wrong types and trailing
// data are each a 400 naming what is wrong. v's known fields are its json tags.
func decodeStrict(body []byte, v any, known map[string]bool) error {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "body must be one JSON object with nothing after it")
	}
	if fields == nil {
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "body must be a JSON object, not null")
	}
	for name := range fields {
		if !known[name] {
			return invalidField(name, "unknown field (docs/queen.md lists the fields of this body)")
		}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonFields lists the json names of a struct's fields, embedded structs included.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			maps.Copy(out, jsonFields(f.Type))
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = true
	}
	return out
}

var registerFields = jsonFields(reflect.TypeFor[wire.RegisterRequest]())

// decodeLenient decodes one JSON object into v, ignoring fields it does not know.
func decodeLenient(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return jsonError(err)
	}
	return nil
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "body must be a JSON object")
		}
		return invalidField(field, "must be a %s", typeErr.Type.Kind())
	case errors.As(err, &syntaxErr):
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "body is empty or cut short: send a JSON object")
	}
	return wire.NewError(http.StatusBadRequest, wire.CodeInvalidJSON, "malformed JSON: %v", err)
}

// decodeRegister decodes and validates a registration body. Every field wire's
// RegisterRequest defines is accepted; any other is rejected, so a typo never passes
// silently. spawned_by is optional (a self-registering worker may not know who spawned it).
func decodeRegister(body []byte) (wire.RegisterRequest, error) {
	var req wire.RegisterRequest
	if err := decodeStrict(body, &req, registerFields); err != nil {
		return wire.RegisterRequest{}, err
	}
	if err := validateRegister(req); err != nil {
		return wire.RegisterRequest{}, err
	}
	return req, nil
}

func validateRegister(req wire.RegisterRequest) error {
	if err := validateWorkerID(req.WorkerID); err != nil {
		return err
	}
	switch {
	case req.Hostname == "":
		return invalidField("hostname", "is required (the host the worker listens on, e.g. 127.0.0.1)")
	case len(req.Hostname) > maxHostnameLen:
		return invalidField("hostname", "is over %d characters", maxHostnameLen)
	case net.ParseIP(req.Hostname) == nil && !hostnamePattern.MatchString(req.Hostname):
		return invalidField("hostname", "%q is not a host name or IP address (no scheme, port or path)", req.Hostname)
	}
	if req.Port < 1 || req.Port > 65535 {
		return invalidField("port", "%d is outside 1..65535", req.Port)
	}
	switch {
	case req.WorkerType == "":
		return invalidField("worker_type", "is required (e.g. %q)", wire.DefaultWorkerType)
	case len(req.WorkerType) > maxTypeLen || !tokenPattern.MatchString(req.WorkerType):
		return invalidField("worker_type", "must be 1..%d characters of [A-Za-z0-9._-]", maxTypeLen)
	}
	switch {
	case req.Model == "":
		return invalidField("model", "is required (the model name the worker serves)")
	case len(req.Model) > maxModelLen || hasControl(req.Model):
		return invalidField("model", "must be 1..%d printable characters", maxModelLen)
	}
	if len(req.SpawnedBy) > maxSpawnedBy || hasControl(req.SpawnedBy) {
		return invalidField("spawned_by", "must be at most %d printable characters", maxSpawnedBy)
	}
	if req.SpawnOrderID != "" && !validOrderID(req.SpawnOrderID) {
		return invalidField("spawn_order_id", "must be 1..%d characters of [A-Za-z0-9._-]", maxOrderIDLen)
	}
	return validateWorkerKey(req.WorkerKey)
}

func validateWorkerKey(key string) error {
	if key != "" && !workerkey.Valid(key) {
		return invalidField("worker_key", "must be %d..%d characters of [A-Za-z0-9._~-]", workerkey.MinLen, workerkey.MaxLen)
	}
	return nil
}

// Bounds of a heartbeat's load figures: far past any real worker, and small enough
// that their sums (active + queued, the gateway's load) cannot overflow.
const (
	maxRequestFigure = 1 << 24
	maxKVFigure      = 1 << 30
)

func validateWorkerID(id string) error {
	switch {
	case id == "":
		return invalidField("worker_id", "is required")
	case len(id) > wire.MaxWorkerIDLen:
		return invalidField("worker_id", "is %d characters, over the limit of %d", len(id), wire.MaxWorkerIDLen)
	case !wire.ValidWorkerID(id):
		return invalidField("worker_id", "%q has characters outside [A-Za-z0-9._-]", id)
	}
	return nil
}

// decodeHeartbeat decodes and validates a heartbeat. Heartbeats tolerate fields they do
// not know: workers may report more load figures than this Queen uses.
func decodeHeartbeat(body []byte) (wire.Heartbeat, error) {
	var hb wire.Heartbeat
	if err := decodeLenient(body, &hb); err != nil {
		return wire.Heartbeat{}, err
	}
	if err := validateWorkerID(hb.WorkerID); err != nil {
		return wire.Heartbeat{}, err
	}
	switch hb.Status {
	case "":
		hb.Status = wire.StatusReady
	case wire.StatusReady, wire.StatusBusy, wire.StatusLoading:
	default:
		return wire.Heartbeat{}, invalidField("status", "%q is not one of ready, busy, loading", hb.Status)
	}
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"active_requests", hb.ActiveRequests, maxRequestFigure},
		{"queued_requests", hb.QueuedRequests, maxRequestFigure},
		{"slots", hb.Slots, maxRequestFigure},
		{"kv_cache_tokens", hb.KVCacheTokens, maxKVFigure},
		{"kv_cache_capacity", hb.KVCacheCapacity, maxKVFigure},
	} {
		if f.v < 0 || f.v > f.max {
			return wire.Heartbeat{}, invalidField(f.name, "%d is outside 0..%d", f.v, f.max)
		}
	}
	if err := validateWorkerKey(hb.WorkerKey); err != nil {
		return wire.Heartbeat{}, err
	}
	return hb, nil
}

func hasControl(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// parseQueenURL checks a Queen URL (http or https, a host, no query) and trims a
// trailing slash.
func parseQueenURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: use an http:// or https:// URL", raw)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: use scheme://host:port with no query", raw)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}
