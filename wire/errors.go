package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrorDetail is the inside of an OpenAI-shaped error.
type ErrorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Param   string `json:"param,omitempty"`
	// PromptTokens and ContextLength come with CodeContextExceeded so a client can say by
	// how much the prompt is too long (llama-server's field names).
	PromptTokens  int `json:"n_prompt_tokens,omitempty"`
	ContextLength int `json:"n_ctx,omitempty"`
}

// ErrorBody is every error answer: {"error":{"message","type","code"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// Error types (OpenAI's vocabulary).
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeUnavailable    = "service_unavailable"
)

// Error codes the parts act on.
const (
	CodeUnknownWorker   = "unknown_worker"
	CodeWorkerConflict  = "worker_id_conflict"
	CodeModelNotFound   = "model_not_found"
	CodeNoWorkerOnline  = "no_worker_online"
	CodeContextExceeded = "context_length_exceeded"
	CodeInvalidJSON     = "invalid_json"
	CodeInvalidField    = "invalid_field"
	CodeBodyTooLarge    = "body_too_large"
	CodeBusy            = "server_busy"
	CodeUnauthorized    = "invalid_api_key"
	CodeLoading         = "model_loading"
	// CodeWorkerKeyMismatch: the id is bound to another worker's identity key.
	CodeWorkerKeyMismatch = "worker_key_mismatch"
	// CodeForbidden: refused before any handler ran (a Host, Origin or address this
	// server does not accept).
	CodeForbidden = "forbidden"
	// CodeUnsupportedMediaType: a JSON endpoint got a body that does not say it is JSON.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeTimeout: the request body did not arrive in time.
	CodeTimeout = "request_timeout"
)

// APIError is an error that knows its HTTP status and public body. Handlers return it;
// one adapter renders it; clients decode it and check it with errors.As.
type APIError struct {
	Status int
	Detail ErrorDetail
	// RetryAfter, when set, goes out as the Retry-After header (whole seconds).
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Detail.Code != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Detail.Code, e.Detail.Message)
	}
	return fmt.Sprintf("%d: %s", e.Status, e.Detail.Message)
}

// NewError builds an APIError with a type fitting the status.
func NewError(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Detail: ErrorDetail{
		Message: fmt.Sprintf(format, args...),
		Type:    typeForStatus(status),
		Code:    code,
	}}
}

// ContextExceeded is the error for a prompt of promptTokens that does not fit a context of
// contextLength tokens: 400 context_length_exceeded carrying both figures.
func ContextExceeded(promptTokens, contextLength int) *APIError {
	e := NewError(http.StatusBadRequest, CodeContextExceeded,
		"the prompt has %d tokens, %d more than the context of %d", promptTokens, promptTokens-contextLength, contextLength)
	e.Detail.PromptTokens = promptTokens
	e.Detail.ContextLength = contextLength
	return e
}

func typeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return TypeAuthentication
	case status == http.StatusNotFound:
		return TypeNotFound
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status == http.StatusServiceUnavailable:
		return TypeUnavailable
	case status >= 500:
		return TypeServer
	default:
		return TypeInvalidRequest
	}
}

// WriteError renders err as JSON. An *APIError keeps its status and message; anything
// else is a 500 whose cause stays out of the answer.
func WriteError(w http.ResponseWriter, err error) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		apiErr = NewError(http.StatusInternalServerError, "", "internal error")
	}
	if apiErr.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((apiErr.RetryAfter+time.Second-1)/time.Second)))
	}
	WriteJSON(w, apiErr.Status, ErrorBody{Error: apiErr.Detail})
}

// WriteJSON writes v as a JSON answer with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeError reads an error answer's body into an *APIError; a body that is not an
// OpenAI-shaped error keeps its first bytes as the message.
func DecodeError(status int, body []byte) *APIError {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.Error.Message != "" || eb.Error.Code != "") {
		return &APIError{Status: status, Detail: eb.Error}
	}
	msg := string(body)
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{Status: status, Detail: ErrorDetail{Message: msg, Type: typeForStatus(status)}}
}

// BearerPrefix starts the Authorization header value.
const BearerPrefix = "Bearer "

// BearerToken returns the token of an Authorization header value. The scheme is
// case-insensitive (RFC 7235: "bearer x" is "Bearer x").
func BearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}
