package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The cluster: a Queen on an extra address of the loopback interface (10.79.N.1), hive-a and hive-b
// each in a network namespace behind a veth pair routed to it, hive-c in this namespace
// reaching the Queen through the fault proxy on loopback, its state folder on a tmpfs,
// and the desktop app's core (appcore_test.go) in a third namespace like hive-a's.
// Nothing listens or dials beyond this machine.

const heartbeat = 500 * time.Millisecond

var modelNames = []string{"stories260K", "storiesB"}

// proc is one process the soak started (Queen, hive, spawn or app core) with its output
// in a file.
type proc struct {
	cmd    *exec.Cmd
	out    string
	exited chan struct{}
	said   bool // a problem in its output was reported (app core)
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// hiveNode is a hive process or the app core: each has its own BEEKEEPER_HOME and
// registry, and marks the workers it starts with its state folder.
type hiveNode struct {
	id       string
	ns       string // network namespace ("" = this one)
	nsVeth   string // the namespace's end of the veth pair
	rootIP   string // this namespace's end (the namespace's route to the Queen)
	home     string // BEEKEEPER_HOME
	state    string // home/state: the workers' marker
	queenURL string
	tmpfs    bool // state on a tmpfs (disk-full fault)
	proc     *proc
	starts   int
}

type cluster struct {
	t        *testing.T
	bin      string
	dir      string
	models   string
	token    string
	subnet   int
	queenIP  string
	queenAdr string
	queenURL string
	loAddr   bool
	queen    *proc
	qstarts  int
	proxy    *Proxy
	hives    []*hiveNode // the `beekeeper hive` processes
	app      *hiveNode   // the desktop app's core
	appBin   string      // this test binary: the app core with appCoreArg
	appProcs []*proc     // every start of the app core, for the checks of its output
	http     *http.Client
	procsMu  sync.Mutex
	procs    []*proc
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// requireNetns skips (or, under CI=true, fails) when this machine cannot build the
// cluster's network.
func requireNetns(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chaos soak cannot run in CI: "+format, args...)
		}
		t.Skipf("chaos soak skipped: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("it needs root for `ip netns`, veth and tmpfs (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("no `ip` command (iproute2): %v", err)
	}
	probe := fmt.Sprintf("bkchprobe%d", os.Getpid()%100000)
	if err := ipCmd("netns", "add", probe); err != nil {
		skip("network namespaces not permitted here: %v", err)
	}
	defer func() { _ = ipCmd("netns", "del", probe) }()
	if err := ipCmd("-n", probe, "link", "set", "lo", "up"); err != nil {
		skip("network namespaces cannot be entered here: %v", err)
	}
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		bin:    testenv.Binary(t),
		token:  fmt.Sprintf("chaos-token-%d-%d", os.Getpid(), time.Now().UnixNano()),
		subnet: 10 + os.Getpid()%200,
		http:   &http.Client{Timeout: 3 * time.Second},
	}
	c.queenIP = fmt.Sprintf("10.79.%d.1", c.subnet)
	if c.dir = *flagKeep; c.dir != "" {
		must(t, os.Mkdir(c.dir, 0o755)) // a new one: nothing of another run mixes in
		t.Logf("logs and state kept in %s", c.dir)
	} else {
		c.dir = t.TempDir()
	}
	t.Cleanup(c.teardown) // registered first: runs last, after every process is gone

	// Models: the test model under two names, so a request answered by the wrong
	// model's worker shows.
	c.models = filepath.Join(c.dir, "models")
	must(t, os.MkdirAll(c.models, 0o755))
	src, err := os.ReadFile(testenv.Model(t))
	must(t, err)
	for _, m := range modelNames {
		must(t, os.WriteFile(filepath.Join(c.models, m+".gguf"), src, 0o644))
	}

	// The Queen's address: one more address of this namespace's loopback interface
	// (no dummy interface needed), which the hives' namespaces route to.
	_ = ipCmd("addr", "del", c.queenIP+"/32", "dev", "lo") // a leftover of a killed run
	must(t, ipCmd("addr", "add", c.queenIP+"/32", "dev", "lo"))
	c.loAddr = true
	port := testenv.FreePort(t)
	c.queenAdr = fmt.Sprintf("%s:%d", c.queenIP, port)
	c.queenURL = "http://" + c.queenAdr
	c.startQueen()

	for i, name := range []string{"a", "b"} {
		h := &hiveNode{id: "hive-" + name}
		c.hives = append(c.hives, h) // before its namespace: teardown deletes what was made
		c.netns(h, name, i)
	}

	// hive-c: this namespace, through the fault proxy, state on a tmpfs.
	c.proxy, err = NewProxy("127.0.0.1:0", c.queenAdr)
	must(t, err)
	hc := &hiveNode{id: "hive-c", queenURL: "http://" + c.proxy.Addr()}
	c.hives = append(c.hives, hc)

	// The app core: a namespace like hive-a's (a desktop on the Queen's network). Its hive
	// binds its workers on all addresses for a Queen that is not on loopback, which here
	// are the namespace's own.
	c.appBin, err = os.Executable()
	must(t, err)
	c.app = &hiveNode{id: "app"}
	c.netns(c.app, "app", 2)

	for _, h := range c.nodes() {
		h.home = filepath.Join(c.dir, h.id)
		h.state = filepath.Join(h.home, "state")
		must(t, os.MkdirAll(h.state, 0o700))
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", hc.state).CombinedOutput(); err != nil {
		t.Logf("disk-full fault off: cannot mount a tmpfs on %s: %v: %s", hc.state, err, bytes.TrimSpace(out))
	} else {
		hc.tmpfs = true
	}
	for _, h := range c.hives {
		c.startHive(h)
	}
	if line := c.startApp(); !strings.Contains(line, "first start") {
		t.Fatalf("the app core's first start: %s", line)
	}
	return c
}

// netns puts h in a new network namespace (bkchN+name) behind a veth pair whose root
// end is 10.79.N.(17+4i), routed to the Queen's address.
func (c *cluster) netns(h *hiveNode, name string, i int) {
	t := c.t
	ns := fmt.Sprintf("bkch%d%s", c.subnet, name)
	h.ns, h.nsVeth = ns, ns+"n"
	h.rootIP = fmt.Sprintf("10.79.%d.%d", c.subnet, 17+4*i)
	nsIP := fmt.Sprintf("10.79.%d.%d", c.subnet, 18+4*i)
	_ = ipCmd("netns", "del", ns)
	_ = ipCmd("link", "del", ns+"r")
	must(t, ipCmd("netns", "add", ns))
	for _, step := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"link", "add", ns + "r", "type", "veth", "peer", "name", h.nsVeth},
		{"link", "set", h.nsVeth, "netns", ns},
		{"addr", "add", h.rootIP + "/30", "dev", ns + "r"},
		{"link", "set", ns + "r", "up"},
		{"-n", ns, "addr", "add", nsIP + "/30", "dev", h.nsVeth},
		{"-n", ns, "link", "set", h.nsVeth, "up"},
		{"-n", ns, "route", "add", c.queenIP + "/32", "via", h.rootIP},
	} {
		must(t, ipCmd(step...))
	}
	h.queenURL = c.queenURL
}

// nodes is every registry the invariants read: the hives' and the app core's.
func (c *cluster) nodes() []*hiveNode {
	ns := append([]*hiveNode(nil), c.hives...)
	if c.app != nil {
		ns = append(ns, c.app)
	}
	return ns
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start runs the beekeeper binary (in ns when set) with env added to this process's.
func (c *cluster) start(name, ns string, env []string, args ...string) *proc {
	c.t.Helper()
	return c.startBin(name, ns, env, c.bin, args...)
}

// startBin runs bin (in ns when set) with env added to this process's.
func (c *cluster) startBin(name, ns string, env []string, bin string, args ...string) *proc {
	c.t.Helper()
	argv := append([]string{bin}, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...) // execs: the pid is bin's
	}
	out := filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(out)
	must(c.t, err)
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	must(c.t, cmd.Start())
	p := &proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	c.procsMu.Lock()
	c.procs = append(c.procs, p)
	c.procsMu.Unlock()
	return p
}

func (c *cluster) startQueen() {
	c.qstarts++
	c.queen = c.start("queen", "", []string{wire.EnvQueenToken + "=" + c.token},
		"queen", "--addr", c.queenAdr, "--heartbeat-interval", heartbeat.String())
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.http.Get(c.queenURL + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !c.queen.alive() {
			c.t.Fatalf("queen exited:\n%s", c.queen.output())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	c.t.Fatalf("queen not healthy in 15s:\n%s", c.queen.output())
}

func (c *cluster) hiveEnv(h *hiveNode) []string {
	return []string{"BEEKEEPER_HOME=" + h.home, wire.EnvQueenToken + "=" + c.token}
}

func (c *cluster) startHive(h *hiveNode) {
	h.starts++
	h.proc = c.start(h.id, h.ns, c.hiveEnv(h), "hive", "--queen", h.queenURL, "--models", c.models, "--id", h.id)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(h.proc.output(), "serving Queen") {
		if !h.proc.alive() {
			c.t.Fatalf("%s exited:\n%s", h.id, h.proc.output())
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not start in 20s:\n%s", h.id, h.proc.output())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// startApp starts the app core and waits for its ready line, which it returns. A first
// start sets the Queen and spawns a worker on the first model; a restart only opens.
func (c *cluster) startApp() string {
	h := c.app
	h.starts++
	h.proc = c.startBin(h.id, h.ns, []string{"BEEKEEPER_HOME=" + h.home}, c.appBin, appCoreArg,
		"-queen", h.queenURL, "-token", c.token, "-worker-binary", c.bin,
		"-model", filepath.Join(c.models, modelNames[0]+".gguf"))
	c.appProcs = append(c.appProcs, h.proc)
	deadline := time.Now().Add(60 * time.Second) // a first start loads a model
	for {
		out := h.proc.output()
		if i := strings.Index(out, appReady); i >= 0 {
			if line, _, ok := strings.Cut(out[i:], "\n"); ok {
				return line
			}
		}
		if !h.proc.alive() {
			c.t.Fatalf("the app core exited:\n%s", h.proc.output())
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the app core was not ready in 60s:\n%s", h.proc.output())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// cut takes a namespaced hive's link down (up=false) or brings it back.
func (c *cluster) cut(h *hiveNode, down bool) error {
	if down {
		return ipCmd("-n", h.ns, "link", "set", h.nsVeth, "down")
	}
	if err := ipCmd("-n", h.ns, "link", "set", h.nsVeth, "up"); err != nil {
		return err
	}
	// Taking the link down dropped the route through it.
	return ipCmd("-n", h.ns, "route", "replace", c.queenIP+"/32", "via", h.rootIP)
}

// fill writes to the tmpfs until it is full; unfill frees it.
func (c *cluster) fill(h *hiveNode) error {
	f, err := os.Create(filepath.Join(h.state, "chaos-filler"))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			return nil // ENOSPC: full
		}
	}
}

func (c *cluster) unfill(h *hiveNode) { _ = os.Remove(filepath.Join(h.state, "chaos-filler")) }

// teardown kills every process the soak started (workers found by their marker), then
// removes the tmpfs, the namespaces, the veth pairs and the dummy interface.
func (c *cluster) teardown() {
	if c.proxy != nil {
		c.proxy.Close()
	}
	c.procsMu.Lock()
	for _, p := range c.procs {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	c.procsMu.Unlock()
	for range 3 { // a spawn killed mid-start may have left a worker starting
		for _, w := range c.markedWorkers() {
			_ = syscall.Kill(w.pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, h := range c.nodes() {
		if h.tmpfs {
			if out, err := exec.Command("umount", "-l", h.state).CombinedOutput(); err != nil {
				c.t.Errorf("umount %s: %v: %s", h.state, err, out)
			}
		}
		if h.ns != "" {
			_ = ipCmd("netns", "del", h.ns)
			_ = ipCmd("link", "del", h.ns+"r")
		}
	}
	if c.loAddr {
		_ = ipCmd("addr", "del", c.queenIP+"/32", "dev", "lo")
	}
}

// markedWorker is a running process that carries one of our hives' markers.
type markedWorker struct {
	pid  int
	hive *hiveNode
	id   string
}

func (c *cluster) markedWorkers() []markedWorker {
	ents, _ := os.ReadDir("/proc")
	var out []markedWorker
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(b, []byte("BEEKEEPER_HIVE_STATE=")) {
			continue
		}
		var state, id string
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "BEEKEEPER_HIVE_STATE="); ok {
				state = v
			}
			if v, ok := strings.CutPrefix(kv, "BEEKEEPER_WORKER_ID="); ok {
				id = v
			}
		}
		for _, h := range c.nodes() {
			if state == h.state && !zombie(pid) {
				out = append(out, markedWorker{pid: pid, hive: h, id: id})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// registryEntry is the part of localregistry.Entry the soak reads from registry.json.
type registryEntry struct {
	ID         string    `json:"id"`
	PID        int       `json:"pid"`
	Model      string    `json:"model"`
	State      string    `json:"state"`
	SpawnOrder string    `json:"spawn_order"`
	ClaimPID   int       `json:"claim_pid"` // the process starting it (a hive, the app, a spawn)
	StartedAt  time.Time `json:"started_at"`
}

func readRegistry(h *hiveNode) ([]registryEntry, error) {
	b, err := os.ReadFile(filepath.Join(h.state, "registry.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Entries []registryEntry `json:"entries"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return f.Entries, nil
}

// api calls the Queen directly (never through the proxy) with the token.
func (c *cluster) api(method, path string, body any, out any) (int, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, c.queenURL+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

func (c *cluster) queenWorkers() ([]wire.Worker, error) {
	var l struct {
		Workers []wire.Worker `json:"workers"`
	}
	code, err := c.api("GET", "/v1/workers", nil, &l)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /v1/workers: %d", code)
	}
	return l.Workers, err
}
