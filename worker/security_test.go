package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/internal/workerkey"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// browserRequest sends what a browser sends: a Host header naming the page's site, an
// Origin on fetches and form posts, the content type the page chose. An empty host
// leaves the real one.
func browserRequest(t *testing.T, method, url, host, origin, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWorkerRefusesBrowserAttacks (issue 15 items 3 and 4) against a real worker: a page
// that rebinds its DNS name to 127.0.0.1 (its requests carry its own name as Host), a
// cross-site fetch (Origin), a text/plain form post, and an <img> GET of
// /capabilities?queen_url= meant to move the worker to another Queen.
func TestWorkerRefusesBrowserAttacks(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	q := newQueenPeer(t, "")
	w := testenv.StartWorker(t)
	port := fmt.Sprint(w.Port)
	completion := `{"prompt":"Once upon a time","max_tokens":3}`

	// DNS rebinding: every endpoint, /health included, refuses a foreign Host.
	for _, ep := range []struct{ method, path, body string }{
		{"GET", wire.PathHealth, ""}, {"GET", wire.PathModels, ""}, {"GET", wire.PathCapabilities, ""},
		{"POST", wire.PathCompletions, completion},
	} {
		status, body := browserRequest(t, ep.method, w.URL+ep.path, "rebind.attacker.example:"+port, "", "application/json", ep.body)
		if status != http.StatusForbidden || !strings.Contains(body, "--allowed-hosts") {
			t.Errorf("%s %s with a rebound Host: %d %s, want 403 naming --allowed-hosts", ep.method, ep.path, status, body)
		}
	}
	// The machine's own names pass.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		if status, body := browserRequest(t, "GET", w.URL+wire.PathModels, host, "", "", ""); status != 200 {
			t.Errorf("Host %s: %d %s", host, status, body)
		}
	}

	// A cross-site fetch, even with a JSON body: refused before any token is generated.
	status, body := browserRequest(t, "POST", w.URL+wire.PathCompletions, "", "https://evil.example", "application/json", completion)
	if status != http.StatusForbidden || !strings.Contains(body, "--allowed-origins") {
		t.Fatalf("cross-site completion: %d %s, want 403 naming --allowed-origins", status, body)
	}
	// A page on another loopback port is another site too.
	if status, _ := browserRequest(t, "POST", w.URL+wire.PathCompletions, "", "http://127.0.0.1:1", "application/json", completion); status != http.StatusForbidden {
		t.Fatalf("completion from a page on another local port: %d, want 403", status)
	}
	// A form post (text/plain needs no preflight) is not JSON: 415 naming the fix.
	for _, ct := range []string{"text/plain;charset=UTF-8", "application/x-www-form-urlencoded", ""} {
		status, body := browserRequest(t, "POST", w.URL+wire.PathCompletions, "", "", ct, completion)
		if status != http.StatusUnsupportedMediaType || !strings.Contains(body, "Content-Type: application/json") {
			t.Fatalf("completion as %q: %d %s, want 415 naming the fix", ct, status, body)
		}
	}
	// A same-origin page on loopback is this server's own.
	if status, body := browserRequest(t, "POST", w.URL+wire.PathCompletions, "", w.URL, "application/json", completion); status != 200 {
		t.Fatalf("same-origin completion: %d %s", status, body)
	}

	// An <img src="http://127.0.0.1:port/capabilities?queen_url=..."> changes nothing.
	status, body = browserRequest(t, "GET", w.URL+wire.PathCapabilities+"?queen_url="+q.url(), "", "", "", "")
	if status != 200 {
		t.Fatalf("capabilities: %d %s", status, body)
	}
	if caps := decode[wire.Capabilities](t, []byte(body)); caps.QueenURL != "" {
		t.Fatalf("a GET moved the worker to %q", caps.QueenURL)
	}
	time.Sleep(300 * time.Millisecond) // a heartbeat would come at once (adopt pokes the sender)
	if regs, beats := q.snapshot(); regs+beats != 0 {
		t.Fatalf("after a GET with queen_url the Queen got %d registrations and %d heartbeats", regs, beats)
	}
}

// TestWorkerAllowedOrigins: --allowed-origins lets a named page call the worker, with
// CORS headers and an answered preflight; $BEEKEEPER_ALLOWED_HOSTS adds a Host name.
func TestWorkerAllowedOrigins(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	t.Setenv("BEEKEEPER_ALLOWED_HOSTS", "llm.example.lan")
	w := testenv.StartWorker(t, "--allowed-origins", "http://localhost:3000")
	req, _ := http.NewRequest(http.MethodOptions, w.URL+wire.PathChat, nil)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	status, body := browserRequest(t, "POST", w.URL+wire.PathCompletions, "", "http://localhost:3000", "application/json", `{"prompt":"Once","max_tokens":2}`)
	if status != 200 {
		t.Fatalf("allowed origin: %d %s", status, body)
	}
	if status, body := browserRequest(t, "GET", w.URL+wire.PathModels, "llm.example.lan:80", "", "", ""); status != 200 {
		t.Fatalf("Host from $BEEKEEPER_ALLOWED_HOSTS: %d %s", status, body)
	}
}

// postFrom sends a JSON POST from a chosen loopback source address (127.0.0.2: "another
// machine" without leaving this one).
func postFrom(t *testing.T, src, url, body string, header ...string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
	}).DialContext}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newQueenPeerAt is a queenPeer listening on addr (127.0.0.2:0: a Queen "elsewhere").
func newQueenPeerAt(t *testing.T, addr string) *queenPeer {
	q := &queenPeer{t: t, interval: 200 * time.Millisecond}
	q.start(addr)
	t.Cleanup(q.stop)
	return q
}

// TestAdoptionNeedsTrust (issue 15 item 4, docs/protocol.md §5): the hand-over to a Queen is a
// POST the worker trusts only with its token, its identity key, or from the Queen's own
// address (and then only when the worker follows no Queen, or that request comes from
// the Queen it follows).
func TestAdoptionNeedsTrust(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	first := newQueenPeer(t, "")                  // 127.0.0.1
	elsewhere := newQueenPeerAt(t, "127.0.0.2:0") // another "machine"
	w := testenv.StartWorker(t, "--queen-url", first.url())
	testenv.WaitFor(t, "heartbeats at the first queen", 10*time.Second, func() bool { _, b := first.snapshot(); return b >= 1 })
	adoptBody := `{"queen_url":"` + elsewhere.url() + `"}`

	// The GET that used to hand over is gone; a POST from this machine (not the named
	// Queen's address) is refused.
	if status, body := postFrom(t, "127.0.0.1", w.URL+wire.PathAdopt, adoptBody); status != http.StatusForbidden {
		t.Fatalf("adopt from an address that is not the Queen's: %d %s", status, body)
	}
	// From the named Queen's address, but the worker follows another Queen: refused.
	if status, body := postFrom(t, "127.0.0.2", w.URL+wire.PathAdopt, adoptBody); status != http.StatusForbidden {
		t.Fatalf("adopt from the new Queen while the worker follows another: %d %s", status, body)
	}
	// A wrong identity key: refused.
	if status, body := postFrom(t, "127.0.0.1", w.URL+wire.PathAdopt, adoptBody, wire.HeaderWorkerKey, strings.Repeat("x", 40)); status != http.StatusForbidden {
		t.Fatalf("adopt with a wrong key: %d %s", status, body)
	}
	if _, b := elsewhere.snapshot(); b != 0 {
		t.Fatalf("a refused adoption moved the heartbeats")
	}

	// The worker's own key (its key file, owner-only, which its spawner reads) hands over.
	keyFile := workerkey.Path(wire.WorkerID("llm", "127.0.0.1", w.Port), w.Port)
	if !strings.HasPrefix(keyFile, home) {
		t.Fatalf("key file %s outside BEEKEEPER_HOME", keyFile)
	}
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v; want 0600", keyFile, err, st)
	}
	key, _, err := workerkey.Read(wire.WorkerID("llm", "127.0.0.1", w.Port), w.Port)
	if err != nil || key == "" {
		t.Fatalf("read the key file: %q %v", key, err)
	}
	if status, body := postFrom(t, "127.0.0.1", w.URL+wire.PathAdopt, adoptBody, wire.HeaderWorkerKey, key); status != http.StatusOK {
		t.Fatalf("adopt with the worker's key: %d %s", status, body)
	}
	testenv.WaitFor(t, "heartbeats at the new queen", 10*time.Second, func() bool { _, b := elsewhere.snapshot(); return b >= 1 })

	// Its key file goes with the worker.
	w.Signal(syscall.SIGTERM)
	w.Wait(10 * time.Second)
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("key file left after a clean stop: %v", err)
	}
}

// TestQueenlessWorkerAdoptedByQueenAddress: a worker that follows no Queen is handed one
// by a request from that Queen's address (the Queen's own fetch after a registration).
func TestQueenlessWorkerAdoptedByQueenAddress(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	q := newQueenPeerAt(t, "127.0.0.2:0")
	w := testenv.StartWorker(t)
	status, body := postFrom(t, "127.0.0.2", w.URL+wire.PathAdopt, `{"queen_url":"`+q.url()+`"}`)
	if status != http.StatusOK || decode[wire.Capabilities](t, []byte(body)).QueenURL != q.url() {
		t.Fatalf("adopt from the Queen's address: %d %s", status, body)
	}
	testenv.WaitFor(t, "self-registration and heartbeats", 10*time.Second, func() bool { r, b := q.snapshot(); return r == 1 && b >= 1 })
}

// TestWorkerTokenFromEnvironment (issue 15 items 7 and 14): the token comes from
// $BEEKEEPER_API_TOKEN, never the command line; a lowercase "bearer" is accepted; the
// deprecated --api-token still works and says so.
func TestWorkerTokenFromEnvironment(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	t.Setenv(wire.EnvAPIToken, "env-s3cret")
	w := testenv.StartWorker(t)
	cmdline, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(w.Cmd.Process.Pid), "cmdline"))
	if err == nil && strings.Contains(string(cmdline), "env-s3cret") {
		t.Fatalf("the token is on the command line: %q", cmdline)
	}
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", w.URL+wire.PathModels, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for auth, want := range map[string]int{
		"": 401, "Bearer wrong": 401, "Bearer env-s3cret": 200, "bearer env-s3cret": 200, "BEARER env-s3cret": 200, "Basic env-s3cret": 401,
	} {
		if got := get(auth); got != want {
			t.Errorf("Authorization %q: %d, want %d", auth, got, want)
		}
	}

	t.Setenv(wire.EnvAPIToken, "")
	old := testenv.StartWorker(t, "--api-token", "flag-tok")
	old.WaitOutput("--api-token is deprecated", 5*time.Second)
	req, _ := http.NewRequest("GET", old.URL+wire.PathModels, nil)
	req.Header.Set("Authorization", "Bearer flag-tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("--api-token: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestSlowBodiesAndConnectionCap (issue 15 item 8) against a real worker: bodies that
// trickle in are cut at --body-timeout, one address holds at most
// --max-conns-per-client connections while another is still served, and a streamed
// answer longer than the body timeout is not cut.
func TestSlowBodiesAndConnectionCap(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	const cap = 20
	w := testenv.StartWorker(t, "--body-timeout", "500ms", "--max-conns-per-client", fmt.Sprint(cap))
	addr := fmt.Sprintf("127.0.0.1:%d", w.Port)

	// cap connections trickling a body: each is answered 408 or closed soon after 500 ms.
	ends := make(chan time.Duration, cap)
	start := time.Now()
	var conns []net.Conn
	for range cap {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", wire.PathCompletions, addr)
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the worker answers and closes
			ends <- time.Since(start)
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The address is at its cap: one more is refused at once with 429...
	if status, body := rawGet(t, "127.0.0.1", addr); status != http.StatusTooManyRequests || !strings.Contains(body, "--max-conns-per-client") {
		t.Fatalf("connection %d from one address: %d %s, want 429", cap+1, status, body)
	}
	// ...while another address is served.
	if status, body := rawGet(t, "127.0.0.2", addr); status != http.StatusOK {
		t.Fatalf("/health from another address while one is at its cap: %d %s", status, body)
	}
	for range cap {
		select {
		case d := <-ends:
			if d > 5*time.Second {
				t.Fatalf("a trickled body held its connection %v; --body-timeout is 500ms", d)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("trickled bodies still held after 20 s")
		}
	}

	// A stream of ~1 s (longer than the body timeout) arrives whole.
	status, body := post(t, w.URL+wire.PathCompletions, map[string]any{
		"prompt": "Once upon a time", "max_tokens": 1500, "ignore_eos": true, "temperature": 0, "stream": true,
	})
	if status != 200 || !strings.Contains(string(body), "data: [DONE]") || !strings.Contains(string(body), `"finish_reason":"length"`) {
		t.Fatalf("long stream after the body timeout: %d, ends %q", status, tail(body))
	}
}

func tail(b []byte) string {
	if len(b) > 300 {
		return "…" + string(b[len(b)-300:])
	}
	return string(b)
}

// rawGet sends GET /health from source address src and reads the answer.
func rawGet(t *testing.T, src, addr string) (int, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", wire.PathHealth, addr)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET /health from %s: %v", src, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWorkerIDDotsRefused (issue 15 item 14): "." and ".." name directories, not workers.
func TestWorkerIDDotsRefused(t *testing.T) {
	for _, id := range []string{".", ".."} {
		p := testenv.StartProcess(t, "worker", "--model", testenv.Model(t), "--port", fmt.Sprint(testenv.FreePort(t)), "--worker-id", id)
		if code := p.Wait(10 * time.Second); code != wire.ExitBadArgs {
			t.Fatalf("--worker-id %s: exit %d, want %d\n%s", id, code, wire.ExitBadArgs, p.Output())
		}
	}
}

// TestNMustBeOne (issue 15 item 14): n asks for several choices, which the worker does
// not make: 400 naming the field, instead of one choice as if n were 1.
func TestNMustBeOne(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	w := testenv.StartWorker(t)
	chat := func(n any) map[string]any {
		b := map[string]any{"messages": []map[string]string{{"role": "user", "content": "Hi"}}, "max_tokens": 2}
		if n != nil {
			b["n"] = n
		}
		return b
	}
	for _, tc := range []struct {
		path string
		body map[string]any
		want int
	}{
		{wire.PathChat, chat(2), 400}, {wire.PathChat, chat(1), 200}, {wire.PathChat, chat(nil), 200},
		{wire.PathCompletions, map[string]any{"prompt": "Once", "max_tokens": 2, "n": 3}, 400},
	} {
		status, body := post(t, w.URL+tc.path, tc.body)
		if status != tc.want {
			t.Fatalf("%s n=%v: %d %s, want %d", tc.path, tc.body["n"], status, body, tc.want)
		}
		if status == 400 && !strings.HasPrefix(wantError(t, status, body, 400, wire.CodeInvalidField).Message, "n ") {
			t.Fatalf("the 400 does not name n: %s", body)
		}
	}
}
