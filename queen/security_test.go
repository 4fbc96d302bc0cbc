package queen

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// raw sends a request as a browser would shape it: the Host a rebound page sends, an
// Origin, and whatever content type the page chose ("" = none).
func raw(t *testing.T, method, url, host, origin, contentType, token, body string) answer {
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
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// TestQueenRefusesBrowserAttacks (issue 15 items 3, 4 and 14): a page that rebinds its
// name to the Queen reads and deletes nothing; cross-site requests and text/plain posts
// register, heartbeat and order nothing (the review's six form posts started six
// workers); a lowercase bearer scheme is a bearer token.
func TestQueenRefusesBrowserAttacks(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	caps := newCapsResponder(t, capsOK)
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", caps.port())); a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	regBody := `{"worker_id":"evil","hostname":"127.0.0.1","port":1,"worker_type":"llm","model":"m","spawned_by":"x"}`
	orderBody := `{"model":"stories260K"}`

	// DNS rebinding: the page's own name as Host.
	for _, ep := range []struct{ method, path, body string }{
		{"GET", wire.PathHealth, ""}, {"GET", wire.PathWorkers, ""}, {"GET", wire.PathEvents, ""},
		{"DELETE", wire.PathWorkers + "/w1", ""}, {"POST", wire.PathRegisterWorker, regBody},
		{"POST", wire.PathSpawnOrders, orderBody},
	} {
		a := raw(t, ep.method, srv.URL+ep.path, "rebind.attacker.example:7833", "", "application/json", "", ep.body)
		if a.status != http.StatusForbidden || !strings.Contains(string(a.body), "--allowed-hosts") {
			t.Errorf("%s %s with a rebound Host: %d %s", ep.method, ep.path, a.status, a.body)
		}
	}
	// Cross-site fetches with a JSON body.
	for _, ep := range []struct{ path, body string }{
		{wire.PathRegisterWorker, regBody}, {wire.PathSpawnOrders, orderBody},
		{wire.PathHeartbeat, `{"worker_id":"w1","status":"loading"}`},
	} {
		if a := raw(t, "POST", srv.URL+ep.path, "", "https://evil.example", "application/json", "", ep.body); a.status != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d %s", ep.path, a.status, a.body)
		}
	}
	if a := raw(t, "DELETE", srv.URL+wire.PathWorkers+"/w1", "", "https://evil.example", "", "", ""); a.status != http.StatusForbidden {
		t.Errorf("cross-site DELETE: %d %s", a.status, a.body)
	}
	// Form posts: text/plain and urlencoded need no preflight, so a page can send them
	// without an Origin check in old browsers; they are not JSON.
	for _, ct := range []string{"text/plain;charset=UTF-8", "application/x-www-form-urlencoded", ""} {
		for _, ep := range []struct{ path, body string }{
			{wire.PathRegisterWorker, regBody}, {wire.PathSpawnOrders, orderBody},
			{wire.PathHeartbeat, `{"worker_id":"w1","status":"loading"}`},
			{wire.PathCompletions, `{"model":"stories260K","prompt":"x"}`},
		} {
			a := raw(t, "POST", srv.URL+ep.path, "", "", ct, "", ep.body)
			if a.status != http.StatusUnsupportedMediaType || !strings.Contains(string(a.body), "Content-Type: application/json") {
				t.Errorf("POST %s as %q: %d %s, want 415 naming the fix", ep.path, ct, a.status, a.body)
			}
		}
	}
	if ws := q.Workers(); len(ws) != 1 || ws[0].WorkerID != "w1" || ws[0].Status == wire.StatusLoading {
		t.Fatalf("the registry changed: %+v", ws)
	}
	if orders, _, _ := q.orders.list(orderFilter{}); len(orders) != 0 {
		t.Fatalf("browser posts placed %d spawn orders", len(orders))
	}

	// The bearer scheme is case-insensitive (RFC 7235).
	_, tsrv, _ := newTestQueen(t, Config{Token: "tok"})
	for auth, want := range map[string]int{"Bearer tok": 200, "bearer tok": 200, "BEARER tok": 200, "Bearer nope": 401, "tok": 401} {
		if a := raw(t, "GET", tsrv.URL+wire.PathWorkers, "", "", "", auth, ""); a.status != want {
			t.Errorf("Authorization %q: %d, want %d", auth, a.status, want)
		}
	}
}

func keyed(req wire.RegisterRequest, key string) wire.RegisterRequest {
	req.WorkerKey = key
	return req
}

const (
	keyA = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	keyB = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

func wantKeyMismatch(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != http.StatusConflict || a.apiError(t).Detail.Code != wire.CodeWorkerKeyMismatch {
		t.Fatalf("%s: %d %s, want 409 %s", what, a.status, a.body, wire.CodeWorkerKeyMismatch)
	}
}

// TestWorkerIdentityKey (issue 15 item 5): the id is bound to the first identity key;
// without it nobody heartbeats the worker (as "loading" or otherwise), re-registers its
// id elsewhere or deletes it while it is live; a dead holder's id may be taken, and the
// old holder then gets 409 (and registers again).
func TestWorkerIdentityKey(t *testing.T) {
	q, srv, clock := newTestQueen(t, Config{})
	real, impostor := newCapsResponder(t, capsOK), newCapsResponder(t, capsOK)
	hb := func(key, status string) answer {
		return do(t, "POST", srv.URL+wire.PathHeartbeat, "", wire.Heartbeat{WorkerID: "w1", Status: status, WorkerKey: key})
	}
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", real.port()), keyA)); a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.body)
	}
	if a := hb(keyA, wire.StatusReady); a.status != 200 {
		t.Fatalf("heartbeat with the key: %d %s", a.status, a.body)
	}
	wantKeyMismatch(t, "heartbeat as loading without the key", hb("", wire.StatusLoading))
	wantKeyMismatch(t, "heartbeat as loading with another key", hb(keyB, wire.StatusLoading))
	wantKeyMismatch(t, "re-registration at another address without the key", do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", impostor.port())))
	wantKeyMismatch(t, "re-registration at another address with another key", do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", impostor.port()), keyB)))
	wantKeyMismatch(t, "re-registration at the same address with another key", do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", real.port()), keyB)))
	wantKeyMismatch(t, "DELETE without the key", do(t, "DELETE", srv.URL+wire.PathWorkers+"/w1", "", nil))
	req, _ := http.NewRequest("DELETE", srv.URL+wire.PathWorkers+"/w1", nil)
	req.Header.Set(wire.HeaderWorkerKey, keyB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("DELETE with another key: %d", resp.StatusCode)
	}
	if wk, _ := q.Worker("w1"); wk.Port != real.port() || wk.State != wire.StateOnline || wk.Status != wire.StatusReady {
		t.Fatalf("refused requests changed the record: %+v", wk)
	}

	// The key proves the id: the same worker may move.
	moved := newCapsResponder(t, capsOK)
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", moved.port()), keyA)); a.status != 200 {
		t.Fatalf("the key holder moving: %d %s", a.status, a.body)
	}

	// Once the holder is offline, another worker may take the id; the old one's next
	// heartbeat gets 409, and it is refused while the new holder is live.
	clock.Advance(wire.OfflineAfter * testInterval)
	q.reg.sweep()
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", impostor.port()), keyB)); a.status != 200 {
		t.Fatalf("taking over an offline id: %d %s", a.status, a.body)
	}
	wantKeyMismatch(t, "the old holder's heartbeat", hb(keyA, wire.StatusReady))
	wantKeyMismatch(t, "the old holder re-registering while the new one is live", do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w1", moved.port()), keyA)))

	// The worker's own DELETE carries its key.
	req, _ = http.NewRequest("DELETE", srv.URL+wire.PathWorkers+"/w1", nil)
	req.Header.Set(wire.HeaderWorkerKey, keyB)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("DELETE with the key: %v %v", resp, err)
	}

	// A registration without a key (an older spawner) is bound by the first keyed
	// heartbeat, its worker's.
	if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w2", real.port())); a.status != 200 {
		t.Fatalf("keyless registration: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", srv.URL+wire.PathHeartbeat, "", wire.Heartbeat{WorkerID: "w2", WorkerKey: keyA}); a.status != 200 {
		t.Fatalf("first keyed heartbeat: %d %s", a.status, a.body)
	}
	wantKeyMismatch(t, "a heartbeat with another key after the binding", do(t, "POST", srv.URL+wire.PathHeartbeat, "", wire.Heartbeat{WorkerID: "w2", WorkerKey: keyB}))

	a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", keyed(regReq("w3", real.port()), "short"))
	if a.status != 400 || a.apiError(t).Detail.Param != "worker_key" {
		t.Fatalf("a malformed key: %d %s", a.status, a.body)
	}
}

// TestGatewayNeverForwardsClientAuthorization (issue 15 item 5): a client's credentials
// never reach a worker (which is whoever registered an address); the Queen's own token
// goes instead when it has one.
func TestGatewayNeverForwardsClientAuthorization(t *testing.T) {
	for _, token := range []string{"", "cluster-tok"} {
		t.Run("token="+token, func(t *testing.T) {
			q, srv, _ := newTestQueen(t, Config{Token: token})
			var mu sync.Mutex
			var seen []string
			w := newCapsResponder(t, func(rw http.ResponseWriter, r *http.Request, hit int) {
				if r.URL.Path == wire.PathCompletions {
					mu.Lock()
					seen = append(seen, r.Header.Get("Authorization"))
					mu.Unlock()
					wire.WriteJSON(rw, 200, map[string]string{"ok": "yes"})
					return
				}
				capsOK(rw, r, hit)
			})
			do(t, "POST", srv.URL+wire.PathRegisterWorker, token, regReq("w1", w.port()))
			do(t, "POST", srv.URL+wire.PathHeartbeat, token, wire.Heartbeat{WorkerID: "w1"})
			waitState(t, q, "w1", wire.StateOnline, 5*time.Second)
			auth := "Bearer user-secret"
			if token != "" {
				auth = "Bearer " + token
			}
			a := raw(t, "POST", srv.URL+wire.PathCompletions, "", "", "application/json", auth, `{"model":"stories260K","prompt":"x"}`)
			if a.status != 200 {
				t.Fatalf("routed: %d %s", a.status, a.body)
			}
			mu.Lock()
			defer mu.Unlock()
			want := ""
			if token != "" {
				want = "Bearer " + token
			}
			if len(seen) != 1 || seen[0] != want {
				t.Fatalf("the worker saw Authorization %q, want %q", seen, want)
			}
		})
	}
}

// TestWorkerNetworksRefuseSSRF (issue 15 item 6): the Queen refuses to register, and to
// dial, worker addresses where a proxy into other machines would reach: link-local
// (cloud metadata), unspecified, multicast; by default anything but loopback and private
// addresses; with --worker-networks anything outside them.
func TestWorkerNetworksRefuseSSRF(t *testing.T) {
	guard := new(testenv.LoopbackDialer)
	_, srv, _ := newTestQueen(t, Config{Dial: guard.DialContext})
	for host, want := range map[string]string{
		"169.254.169.254": "link-local", "fe80::1": "link-local", "0.0.0.0": "no one host", "::": "no one host",
		"0.1.2.3": "no one host", "224.0.0.1": "multicast", "ff02::1": "multicast", "255.255.255.255": "broadcast",
		"8.8.8.8": "--worker-networks", "::ffff:169.254.169.254": "link-local",
	} {
		a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", wire.RegisterRequest{WorkerID: "w", Hostname: host, Port: 80, WorkerType: "llm", Model: "m"})
		if a.status != 400 || a.apiError(t).Detail.Param != "hostname" || !strings.Contains(string(a.body), want) {
			t.Errorf("hostname %s: %d %s, want 400 naming %q", host, a.status, a.body, want)
		}
	}
	for _, host := range []string{"127.0.0.1", "10.0.0.7", "192.168.1.2", "fd00::7", "100.100.1.1", "gpu-box.lan"} {
		id := "w-" + wire.IDSafe(host)
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", wire.RegisterRequest{WorkerID: id, Hostname: host, Port: 80, WorkerType: "llm", Model: "m"}); a.status != 200 {
			t.Errorf("hostname %s: %d %s", host, a.status, a.body)
		}
	}
	for _, addr := range guard.Refused() { // the test guard, not the policy, stopped these
		if h, _, _ := net.SplitHostPort(addr); h == "169.254.169.254" || h == "8.8.8.8" {
			t.Fatalf("the Queen tried to reach refused address %s", addr)
		}
	}

	// With --worker-networks, only those: an address outside is a 400 naming the flag,
	// and a name that resolves outside is never sent a request.
	nets, err := ParseNetworks("10.0.0.0/8, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	w := newCapsResponder(t, func(rw http.ResponseWriter, r *http.Request, hit int) { hits.Add(1); capsOK(rw, r, hit) })
	for name, dial := range map[string]DialFunc{"test dialer": new(testenv.LoopbackDialer).DialContext, "default dialer": nil} {
		t.Run(name, func(t *testing.T) {
			var q *Queen
			var srv *httptest.Server
			if dial != nil {
				q, srv, _ = newTestQueen(t, Config{WorkerNetworks: nets, Dial: dial})
			} else {
				// The Queen's own dialer, which checks each resolved address before it
				// connects. Only "localhost" is dialled: nothing leaves this machine.
				var err error
				if q, err = New(Config{WorkerNetworks: nets, HeartbeatInterval: testInterval, Capabilities: FetchConfig{Backoff: 5 * time.Millisecond}}); err != nil {
					t.Fatal(err)
				}
				srv = httptest.NewServer(q.Handler())
				t.Cleanup(srv.Close)
				t.Cleanup(q.Close)
			}
			for _, host := range []string{"192.168.1.2", "127.0.0.1"} {
				a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", wire.RegisterRequest{WorkerID: "w", Hostname: host, Port: 80, WorkerType: "llm", Model: "m"})
				if a.status != 400 || !strings.Contains(string(a.body), "--worker-networks") {
					t.Errorf("hostname %s outside the networks: %d %s", host, a.status, a.body)
				}
			}
			// "localhost" is a name: accepted, then refused where it resolves (127.0.0.1).
			do(t, "POST", srv.URL+wire.PathRegisterWorker, "", wire.RegisterRequest{WorkerID: "byname", Hostname: "localhost", Port: w.port(), WorkerType: "llm", Model: "stories260K"})
			do(t, "POST", srv.URL+wire.PathHeartbeat, "", wire.Heartbeat{WorkerID: "byname"})
			a := do(t, "POST", srv.URL+wire.PathCompletions, "", map[string]any{"model": "stories260K", "prompt": "x"})
			if a.status != http.StatusBadGateway {
				t.Errorf("routing to a name outside the networks: %d %s", a.status, a.body)
			}
			waitFor(t, 5*time.Second, "the capabilities fetch to give up", func() bool { return q.caps.idle() })
			if n := hits.Load(); n != 0 {
				t.Fatalf("the worker outside the networks got %d requests", n)
			}
		})
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks("10.0.0.0/8,192.168.1.7, fd00::/8,")
	if err != nil || len(got) != 3 || got[1] != netip.MustParsePrefix("192.168.1.7/32") {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseNetworks("10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), "CIDR") {
		t.Fatalf("bad CIDR: %v", err)
	}
}

// TestHeartbeatFiguresBounded (issue 15 item 14): active + queued cannot overflow.
func TestHeartbeatFiguresBounded(t *testing.T) {
	q, srv, _ := newTestQueen(t, Config{})
	do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq("w1", newCapsResponder(t, capsOK).port()))
	body := `{"worker_id":"w1","status":"ready","active_requests":9223372036854775807,"queued_requests":1}`
	a := raw(t, "POST", srv.URL+wire.PathHeartbeat, "", "", "application/json", "", body)
	if a.status != 400 || a.apiError(t).Detail.Param != "active_requests" {
		t.Fatalf("an overflowing load: %d %s", a.status, a.body)
	}
	if wk, _ := q.Worker("w1"); wk.ActiveRequests < 0 {
		t.Fatalf("load overflowed to %d", wk.ActiveRequests)
	}
	for _, id := range []string{".", ".."} {
		if a := do(t, "POST", srv.URL+wire.PathRegisterWorker, "", regReq(id, 80)); a.status != 400 {
			t.Fatalf("worker id %q: %d %s", id, a.status, a.body)
		}
	}
}

// TestExposedQueenNeedsToken (issue 15 item 7): a Queen other machines reach needs a
// token or --insecure; the real command refuses before it opens the port.
func TestExposedQueenNeedsToken(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		addr string
		ok   bool
	}{
		{Config{}, "127.0.0.1:7833", true}, {Config{}, "[::1]:7833", true}, {Config{}, "localhost:7833", true},
		{Config{}, "0.0.0.0:7833", false}, {Config{}, ":7833", false}, {Config{}, "192.168.1.5:7833", false},
		{Config{Token: "t"}, "0.0.0.0:7833", true}, {Config{Insecure: true}, "0.0.0.0:7833", true},
	} {
		q, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.CheckListen(tc.addr); (err == nil) != tc.ok {
			t.Errorf("%+v on %s: %v", tc.cfg, tc.addr, err)
		}
		if err := q.checkBound(&net.TCPAddr{IP: net.ParseIP(strings.Split(tc.addr, ":")[0]), Port: 7833}); tc.addr == "192.168.1.5:7833" && err == nil {
			t.Errorf("bound %s without a token accepted", tc.addr)
		}
		q.Close()
	}

	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	t.Setenv(wire.EnvQueenToken, "")
	port := testenv.FreePort(t)
	p := testenv.StartProcess(t, "queen", "--addr", fmt.Sprintf("0.0.0.0:%d", port))
	if code := p.Wait(10 * time.Second); code != 2 || !strings.Contains(p.Output(), "--insecure") || !strings.Contains(p.Output(), wire.EnvQueenToken) {
		t.Fatalf("a Queen on 0.0.0.0 without a token: exit %d\n%s", code, p.Output())
	}
}

// TestIntegrationIdentityTakeover (issue 15 item 5) with a real worker: while it is
// frozen (SIGSTOP) its record goes offline and an impostor takes its id at another
// address; thawed, the real worker's heartbeat gets 409, it registers again, and once
// the impostor stops heartbeating it holds its id at its own address again. Meanwhile
// the impostor cannot delete or re-point the live real worker.
func TestIntegrationIdentityTakeover(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	interval := 100 * time.Millisecond
	q, queenURL, _ := runQueen(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), interval)
	w := startWorker(t, "--queen-url", queenURL)
	waitState(t, q, w.id, wire.StateOnline, 10*time.Second)

	impostor := newCapsResponder(t, capsOK)
	imp := regReq(w.id, impostor.port())
	imp.WorkerKey = keyB
	// Live: the impostor can neither delete nor take the id.
	wantKeyMismatch(t, "DELETE of a live worker", do(t, "DELETE", queenURL+wire.PathWorkers+"/"+w.id, "", nil))
	wantKeyMismatch(t, "taking a live worker's id", do(t, "POST", queenURL+wire.PathRegisterWorker, "", imp))
	wantKeyMismatch(t, "a forged heartbeat", do(t, "POST", queenURL+wire.PathHeartbeat, "", wire.Heartbeat{WorkerID: w.id, Status: wire.StatusLoading, WorkerKey: keyB}))

	w.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { _ = w.Cmd.Process.Signal(syscall.SIGCONT) })
	waitState(t, q, w.id, wire.StateOffline, 10*time.Second)
	if a := do(t, "POST", queenURL+wire.PathRegisterWorker, "", imp); a.status != 200 {
		t.Fatalf("taking an offline id: %d %s", a.status, a.body)
	}
	// The impostor heartbeats (with its own key) until told to stop.
	stopImpostor, impostorDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(impostorDone)
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		for {
			select {
			case <-stopImpostor:
				return
			case <-tick.C:
				hb, _ := http.NewRequest("POST", queenURL+wire.PathHeartbeat,
					strings.NewReader(`{"worker_id":"`+w.id+`","worker_key":"`+keyB+`"}`))
				hb.Header.Set("Content-Type", "application/json")
				if resp, err := http.DefaultClient.Do(hb); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	w.Signal(syscall.SIGCONT)
	w.WaitOutput("another identity key", 10*time.Second)
	time.Sleep(3 * interval) // the real worker retries meanwhile, and is refused
	if wk, _ := q.Worker(w.id); wk.Port != impostor.port() {
		t.Fatalf("the real worker took the id back while the impostor was live: %+v", wk)
	}
	close(stopImpostor)
	<-impostorDone
	// The impostor's record goes stale, and the real worker's registration takes the
	// id back at its own address.
	waitFor(t, 15*time.Second, "the real worker back at its own address", func() bool {
		wk, ok := q.Worker(w.id)
		return ok && wk.Port == w.port && wk.State == wire.StateOnline
	})
}
