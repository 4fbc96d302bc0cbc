package httpguard

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// ok answers 200 after reading the whole body.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusRequestTimeout)
		return
	}
	w.WriteHeader(http.StatusOK)
})

func newGuard(t *testing.T, cfg Config) *Guard {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// This machine's names and addresses, fixed for the test.
	g.own.reread = func() (map[netip.Addr]bool, map[string]bool) {
		return map[netip.Addr]bool{netip.MustParseAddr("192.168.1.20"): true, netip.MustParseAddr("fd00::20"): true},
			map[string]bool{"gpu-box": true, "gpu-box.local": true}
	}
	return g
}

// TestHostCheck: the Host values a DNS-rebinding page sends (its own name) are refused;
// this machine's names and addresses and configured ones pass (issue 15 item 3).
func TestHostCheck(t *testing.T) {
	g := newGuard(t, Config{AllowedHosts: []string{"queen.example.org", ".ts.net", "10.1.2.3"}})
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "LOCALHOST.": true,
		"app.localhost:3000": true, "0.0.0.0:8080": true, "127.9.9.9": true, "": true,
		"192.168.1.20:8080": true, "[fd00::20]:1": true, "gpu-box:8080": true, "GPU-BOX.local": true,
		"queen.example.org:7833": true, "box.tail1234.ts.net": true, "10.1.2.3:80": true,
		// A rebinding page's own name, and addresses that are not this machine's.
		"attacker.example:8080": false, "localhost.attacker.example": false, "gpu-box.attacker.example": false,
		"192.168.1.21:8080": false, "8.8.8.8": false, "ts.net.evil": false,
	} {
		if got := g.HostAllowed(host); got != want {
			t.Errorf("Host %q allowed = %v, want %v", host, got, want)
		}
	}
	if !newGuard(t, Config{AllowedHosts: []string{"*"}}).HostAllowed("anything.example") {
		t.Error(`"*" should allow any Host`)
	}
}

// TestBrowserRequests sends what browsers send: after DNS rebinding (Host = the page's
// name), a cross-site fetch (Origin), a CORS preflight, and same-origin pages.
func TestBrowserRequests(t *testing.T) {
	g := newGuard(t, Config{AllowedOrigins: []string{"http://localhost:3000", "https://ui.example.org:*"}})
	srv := httptest.NewServer(g.Handler(ok))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name, method, host, origin string
		want                       int
		cors                       bool
	}{
		{"plain client", "POST", "", "", 200, false},
		{"rebound page", "POST", "attacker.example:" + fmt.Sprint(port), "http://attacker.example:" + fmt.Sprint(port), 403, false},
		{"rebound page GET", "GET", "attacker.example", "", 403, false},
		{"cross-site fetch", "POST", "", "https://evil.example", 403, false},
		{"cross-site from another loopback port", "POST", "", "http://127.0.0.1:9999", 403, false},
		{"sandboxed frame", "POST", "", "null", 403, false},
		{"same-origin loopback page", "POST", "", "http://127.0.0.1:" + fmt.Sprint(port), 200, false},
		{"allowed origin", "POST", "", "http://localhost:3000", 200, true},
		{"allowed origin any port", "POST", "", "https://ui.example.org:8443", 200, true},
		{"allowed origin wrong scheme", "POST", "", "http://ui.example.org:8443", 403, false},
		{"preflight of an allowed origin", "OPTIONS", "", "http://localhost:3000", 204, true},
		{"preflight of another origin", "OPTIONS", "", "https://evil.example", 403, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+"/v1/chat/completions", strings.NewReader("{}"))
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.method == "OPTIONS" {
				req.Header.Set("Access-Control-Request-Method", "POST")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == 403 {
				e := wire.DecodeError(resp.StatusCode, body)
				if e.Detail.Code != wire.CodeForbidden || !strings.Contains(e.Detail.Message, "--allowed-") {
					t.Fatalf("refusal %+v does not name the fix", e.Detail)
				}
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); (got != "") != tc.cors {
				t.Fatalf("Access-Control-Allow-Origin %q, want CORS headers: %v", got, tc.cors)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{AllowedOrigins: []string{"localhost:3000"}},
		{AllowedOrigins: []string{"http://x.example/path"}},
		{AllowedHosts: []string{"http://x.example"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestRequireJSON: a page may post text/plain or a form anywhere without a preflight;
// only application/json passes.
func TestRequireJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"": false, "text/plain": false, "text/plain;charset=UTF-8": false,
		"application/x-www-form-urlencoded": false, "multipart/form-data; boundary=x": false,
	} {
		r := httptest.NewRequest("POST", "/v1/worker-heartbeat", strings.NewReader("{}"))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		err := RequireJSON(r)
		if (err == nil) != want {
			t.Errorf("Content-Type %q: err %v", ct, err)
		}
		if err != nil && !strings.Contains(err.Error(), "Content-Type: application/json") {
			t.Errorf("the 415 does not name the fix: %v", err)
		}
	}
}

// TestSlowBodyIsCut: a body trickled slower than the deadline ends the request; a long
// answer after a prompt body is not cut by it (the deadline is cleared once the body is
// read), and the request's context stays alive while streaming.
func TestSlowBodyIsCut(t *testing.T) {
	g := newGuard(t, Config{BodyTimeout: 200 * time.Millisecond})
	streamDone := make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("/slow", ok)
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rc := http.NewResponseController(w)
		for i := range 10 { // 500 ms of answer: past the body deadline
			select {
			case <-r.Context().Done():
				streamDone <- fmt.Errorf("request context ended at chunk %d: %w", i, r.Context().Err())
				return
			case <-time.After(50 * time.Millisecond):
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			_ = rc.Flush()
		}
		streamDone <- nil
	})
	srv := httptest.NewServer(g.Handler(mux))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a trickled body held the connection %s; the deadline is 200ms", took)
	}

	resp, err = http.Post(srv.URL+"/stream", "application/json", strings.NewReader(`{"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-streamDone; err != nil {
		t.Fatalf("a long answer was cut by the body deadline: %v", err)
	}
	if !strings.Contains(string(body), "data: 9") {
		t.Fatalf("stream cut short: %q", body)
	}
}

// TestLimitListener: one address holds at most the cap; the next connection gets a 429
// it can read; a closed connection frees its slot.
func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ok}
	go func() { _ = srv.Serve(LimitListener(ln, 3)) }()
	defer srv.Close()

	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n") // a body that never comes
		held = append(held, c)
	}
	get := func() (int, string) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if status, body := get(); status != http.StatusTooManyRequests || !strings.Contains(body, "--max-conns-per-client") {
		t.Fatalf("the 4th connection: %d %s, want 429 naming the fix", status, body)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _ := get()
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot was never given back")
		}
		time.Sleep(10 * time.Millisecond) // the server notices the close asynchronously
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
