package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// post sends body as JSON and returns the status and answer body.
func post(t testing.TB, url string, body any, header ...string) (int, []byte) {
	t.Helper()
	status, data, err := tryPost(url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return status, data
}

// tryPost is post for goroutines other than the test's: it returns the error.
func tryPost(url string, body any, header ...string) (int, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("read answer of %s: %w", url, err)
	}
	return resp.StatusCode, data, nil
}

// sseEvents splits an SSE body into its data payloads, failing on any line that is not
// "data: ..." followed by a blank line.
func sseEvents(t testing.TB, body []byte) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	expectBlank := false
	for sc.Scan() {
		line := sc.Text()
		if expectBlank {
			if line != "" {
				t.Fatalf("want a blank line after each event, got %q", line)
			}
			expectBlank = false
			continue
		}
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("want a \"data: \" line, got %q", line)
		}
		events = append(events, payload)
		expectBlank = true
	}
	return events
}

func decode[T any](t testing.TB, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}

func wantError(t testing.TB, status int, body []byte, wantStatus int, wantCode string) wire.ErrorDetail {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	e := decode[wire.ErrorBody](t, body)
	if e.Error.Message == "" || e.Error.Type == "" || (wantCode != "" && e.Error.Code != wantCode) {
		t.Fatalf("want an OpenAI-shaped error with code %q, got %s", wantCode, body)
	}
	return e.Error
}
