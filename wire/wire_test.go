package wire

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWorkerID(t *testing.T) {
	cases := []struct {
		name, typ, host string
		port            int
		want            string
	}{
		{"loopback address", "llm", "127.0.0.1", 8080, "worker-llm-8080"},
		{"localhost", "llm", "localhost", 8081, "worker-llm-8081"},
		{"empty host is loopback", "embed", "", 8082, "worker-embed-8082"},
		{"IPv6 loopback", "llm", "::1", 8083, "worker-llm-8083"},
		{"LAN address", "llm", "192.168.1.20", 8080, "worker-llm-192.168.1.20-8080"},
		{"IPv6 address", "llm", "fd00::5", 8080, "worker-llm-fd00--5-8080"},
		{"host name", "llm", "gpu-box.local", 8080, "worker-llm-gpu-box.local-8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := WorkerID(tc.typ, tc.host, tc.port)
			if got != tc.want {
				t.Fatalf("WorkerID(%q, %q, %d) = %q, want %q", tc.typ, tc.host, tc.port, got, tc.want)
			}
			if !ValidWorkerID(got) {
				t.Fatalf("WorkerID made an id the Queen would refuse: %q", got)
			}
		})
	}
}

func TestValidWorkerID(t *testing.T) {
	long := make([]byte, MaxWorkerIDLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for id, want := range map[string]bool{
		"worker-llm-8080": true, "a.b_c-D9": true, string(long[:MaxWorkerIDLen]): true,
		"": false, "has space": false, "slash/id": false, "ümlaut": false, string(long): false,
		// Path segments that mean "here" and "up": a key file or URL named by them
		// would be another one (issue 15 item 14).
		".": false, "..": false, "...": true, "..a": true,
	} {
		if got := ValidWorkerID(id); got != want {
			t.Errorf("ValidWorkerID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestModelName(t *testing.T) {
	for path, want := range map[string]string{
		"/models/stories260K.gguf": "stories260K",
		"Llama-3.2-1B.Q4_K_M.GGUF": "Llama-3.2-1B.Q4_K_M",
		"relative/model":           "model",
	} {
		if got := ModelName(path); got != want {
			t.Errorf("ModelName(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestStopAcceptsStringOrList(t *testing.T) {
	cases := map[string]Stop{`"\n"`: {"\n"}, `["a","b"]`: {"a", "b"}, `null`: nil}
	for in, want := range cases {
		var s Stop
		if err := json.Unmarshal([]byte(in), &s); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if len(s) != len(want) || (len(s) > 0 && s[0] != want[0]) {
			t.Fatalf("%s gave %q, want %q", in, s, want)
		}
	}
	var s Stop
	if err := json.Unmarshal([]byte(`42`), &s); err == nil {
		t.Fatal("a number must be refused")
	}
}

// TestErrorRoundTrip: what WriteError renders, DecodeError reads back as the same
// *APIError, and errors.As finds it; causes of 500s stay out of the answer.
func TestErrorRoundTrip(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, ContextExceeded(3000, 2048))
	got := DecodeError(rec.Code, rec.Body.Bytes())
	if got.Status != http.StatusBadRequest || got.Detail.Code != CodeContextExceeded ||
		got.Detail.PromptTokens != 3000 || got.Detail.ContextLength != 2048 || got.Detail.Type != TypeInvalidRequest {
		t.Fatalf("round trip gave %+v", got)
	}
	var apiErr *APIError
	if !errors.As(error(got), &apiErr) {
		t.Fatal("errors.As must find the *APIError")
	}

	rec = httptest.NewRecorder()
	WriteError(rec, errors.New("secret database password in the cause"))
	if rec.Code != http.StatusInternalServerError || json.Valid(rec.Body.Bytes()) == false ||
		DecodeError(rec.Code, rec.Body.Bytes()).Detail.Message != "internal error" {
		t.Fatalf("a plain error must become a bare 500: %d %s", rec.Code, rec.Body.String())
	}

	plain := DecodeError(http.StatusBadGateway, []byte("<html>proxy error</html>"))
	if plain.Detail.Message != "<html>proxy error</html>" || plain.Detail.Type != TypeServer {
		t.Fatalf("a non-JSON body keeps its text: %+v", plain)
	}
}
