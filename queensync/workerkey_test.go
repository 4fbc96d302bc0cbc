package queensync

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/internal/workerkey"
	"github.com/beekeeper-hive/beekeeper/localregistry"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// A worker killed on a port and its successor spawned there have the same id and two
// keys, and one key file between them: each process is proven with its own key, never
// the other's (the other's would bind the id to the wrong key at the Queen, or remove
// the successor's record with the dead worker's deregistration).
func TestWorkerKeyIsPerProcess(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	const id, port = "worker-llm-127.0.0.1-8080", 8080
	writeKey := func(pid int) string {
		t.Helper()
		key := workerkey.New()
		if _, err := workerkey.Write(id, port, key); err != nil { // makes the folder
			t.Fatal(err)
		}
		if err := os.WriteFile(workerkey.Path(id, port), []byte(key+"\n"+strconv.Itoa(pid)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return key
	}
	s := New(Config{})
	old := localregistry.Entry{ID: id, Port: port, PID: 1001}
	successor := localregistry.Entry{ID: id, Port: port, PID: 1002}

	oldKey := writeKey(old.PID)
	if got := s.workerKey(old); got != oldKey {
		t.Fatalf("the worker's own file: key %q, want %q", got, oldKey)
	}
	// Killed, its file left behind; the successor is spawned but has not written its own.
	if got := s.workerKey(successor); got != "" {
		t.Fatalf("the successor was given the killed worker's key %q", got)
	}
	newKey := writeKey(successor.PID)
	if got := s.workerKey(successor); got != newKey {
		t.Fatalf("successor: key %q, want its own %q", got, newKey)
	}
	if got := s.workerKey(old); got != oldKey {
		t.Fatalf("the killed worker's deregistration would prove %q, want its own remembered %q", got, oldKey)
	}
	// The registry now holds only the successor: the killed worker's key is forgotten.
	s.forgetKeys([]localregistry.Entry{successor})
	if got := s.workerKey(old); got != "" {
		t.Fatalf("forgotten key still proven: %q", got)
	}
	if err := os.Remove(workerkey.Path(id, port)); err != nil {
		t.Fatal(err)
	}
	if got := s.workerKey(successor); got != newKey {
		t.Fatalf("the successor's key was not remembered once its file went: %q", got)
	}
}

// A worker killed and at once replaced on its port by a successor (same id, its own key)
// is withdrawn at the Queen with its own key by the next sync, and the successor is
// registered in the same sync: the dead worker's record, still live at the Queen, would
// otherwise refuse the successor (another key) until it went stale.
func TestGoneWithdrawnBeforeItsSuccessor(t *testing.T) {
	t.Setenv("BEEKEEPER_HOME", t.TempDir())
	reg := openRegistry(t, t.TempDir())
	// A long heartbeat interval: the killed worker's record stays live throughout.
	url, _ := queenWith(t, queen.Config{Addr: freeAddr(t), HeartbeatInterval: 10 * time.Second}, nil)
	s := New(Config{Registry: reg, Interval: time.Hour})
	if err := s.SetQueen(url, ""); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, pa := readyWorker(t, reg)
	s.SyncFull(ctx)
	if w, ok := listed(t, url)[a.ID]; !ok || w.State == wire.StateOffline {
		t.Fatalf("first worker not registered: %+v", w)
	}

	pa.Signal(syscall.SIGKILL)
	pa.Wait(5 * time.Second)
	code := -1
	gone, err := reg.Transition(a.ID, a.PID, func(e *localregistry.Entry) error {
		e.State, e.ExitCode = localregistry.StateCrashed, &code
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Gone(gone)

	// The successor binds the same port (so the same id) and writes its own key file
	// over the killed worker's; the hive records it before the sync runs.
	pb := testenv.StartProcess(t, "worker", "--model", testenv.Model(t), "--port", strconv.Itoa(a.Port), "--threads", "1")
	pb.Port, pb.URL = a.Port, "http://127.0.0.1:"+strconv.Itoa(a.Port)
	pb.WaitHealthy(30 * time.Second)
	b := a
	b.PID, b.State, b.Sync, b.ExitCode, b.StartedAt = pb.Cmd.Process.Pid, localregistry.StateReady, localregistry.SyncPending, nil, time.Now().UTC()
	if err := reg.Put(b); err != nil {
		t.Fatal(err)
	}
	keyB, pidB, err := workerkey.Read(b.ID, b.Port)
	if err != nil || pidB != b.PID {
		t.Fatalf("successor's key file: pid %d %v, want pid %d", pidB, err, b.PID)
	}

	s.SyncFull(ctx)
	// The Queen's record of the id is now bound to the successor's key: the successor
	// (re-)registering with it is accepted, as its own heartbeats will be.
	qc, err := queenclient.New(url, "", queenclient.Options{Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Register(ctx, registration(b, keyB)); err != nil {
		t.Fatalf("the successor is refused at the Queen after the sync: %v", err)
	}
	if got, _ := reg.Get(b.ID); got.Sync == localregistry.SyncPending {
		t.Fatalf("successor left pending: %+v", got)
	}
}
