package hive

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Two hosts: the Queen runs in its own network namespace behind a veth pair; the
// spawner and its worker stay in this one. The worker must bind beyond loopback,
// advertise the address on the route to the Queen, and get a host-qualified id; the
// Queen must reach it there.
func TestTwoHostsAdvertisedAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("two-host test needs root for `ip netns` and veth (runs as root in CI)")
	}
	ns := fmt.Sprintf("bkq%d", os.Getpid()%100000)
	vethHost, vethQueen := ns+"h", ns+"q"
	subnet := 100 + os.Getpid()%100
	hostIP, queenIP := fmt.Sprintf("10.77.%d.2", subnet), fmt.Sprintf("10.77.%d.1", subnet)
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", ns); err != nil {
		t.Skipf("network namespaces not permitted here: %v", err)
	}
	t.Cleanup(func() { _ = run("netns", "del", ns); _ = run("link", "del", vethHost) })
	// Creating a namespace can work where entering one cannot (a chroot whose / is not a
	// mount point): probe by entering it once.
	if err := run("-n", ns, "link", "set", "lo", "up"); err != nil {
		t.Skipf("network namespaces cannot be entered here: %v", err)
	}
	for _, step := range [][]string{
		{"link", "add", vethHost, "type", "veth", "peer", "name", vethQueen},
		{"link", "set", vethQueen, "netns", ns},
		{"addr", "add", hostIP + "/24", "dev", vethHost},
		{"link", "set", vethHost, "up"},
		{"-n", ns, "addr", "add", queenIP + "/24", "dev", vethQueen},
		{"-n", ns, "link", "set", vethQueen, "up"},
	} {
		if err := run(step...); err != nil {
			t.Fatal(err)
		}
	}
	queenAddr := fmt.Sprintf("%s:%d", queenIP, 17000+os.Getpid()%1000)
	queenURL := "http://" + queenAddr
	ctx, cancel := context.WithCancel(context.Background())
	qcmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, testenv.Binary(t), "queen",
		"--addr", queenAddr, "--heartbeat-interval", "500ms", "--insecure") // a test network: no token
	qcmd.Stderr = os.Stderr
	if err := qcmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = qcmd.Wait() })

	h := openHive(t, t.TempDir(), queenURL)
	t.Cleanup(func() { h.Close(true) })
	e := spawn(t, h)
	if e.AdvertiseHost != hostIP || e.BindHost != "0.0.0.0" {
		t.Fatalf("worker bind %s advertise %s, want 0.0.0.0 and %s (the route to the Queen)", e.BindHost, e.AdvertiseHost, hostIP)
	}
	if want := wire.WorkerID("llm", hostIP, e.Port); e.ID != want {
		t.Fatalf("worker id %s, want %s", e.ID, want)
	}
	took := waitQueenView(t, queenURL, []string{e.ID}, 5*time.Second)
	ws, err := queenWorkers(queenURL)
	if err != nil || len(ws) != 1 || ws[0].Hostname != hostIP || ws[0].Capabilities == nil || ws[0].Capabilities.WorkerID != e.ID {
		t.Fatalf("queen's record does not show the worker reached at %s: %+v (%v)", hostIP, ws, err)
	}
	t.Logf("Queen in netns %s reached worker %s at %s:%d; online in %v", ns, e.ID, hostIP, e.Port, took)
}
