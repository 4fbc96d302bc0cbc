//go:build linux

package spawner

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestWatchExitFiresWhenTheProcessEnds(t *testing.T) {
	p := startChild(t, `echo ready; while :; do sleep 1; done`)
	w, ok := WatchExit(p.PID, p.CreateTime)
	if !ok {
		t.Skip("this kernel has no pidfd (Linux < 5.10): the hive polls instead")
	}
	defer w.Close()
	select {
	case <-w.Exited:
		t.Fatal("Exited fired while the process runs")
	case <-time.After(200 * time.Millisecond):
	}
	killed := time.Now()
	if err := syscall.Kill(-p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Exited:
		t.Logf("exit seen %v after SIGKILL", time.Since(killed))
	case <-time.After(5 * time.Second):
		t.Fatal("Exited did not fire within 5 s of SIGKILL")
	}
}

func TestWatchExitOfAGoneOrReusedPid(t *testing.T) {
	p := startChild(t, `echo ready; while :; do sleep 1; done`)
	// A wrong start time is another process that reused the pid: ours is gone.
	w, ok := WatchExit(p.PID, p.CreateTime+1)
	if !ok {
		t.Skip("no pidfd on this kernel")
	}
	select {
	case <-w.Exited:
	default:
		t.Fatal("a watch on a reused pid did not report the exit at once")
	}
	syscall.Kill(-p.PID, syscall.SIGKILL)
	<-p.Done()
	w, _ = WatchExit(p.PID, p.CreateTime)
	select {
	case <-w.Exited:
	default:
		t.Fatal("a watch on a reaped pid did not report the exit at once")
	}
}

// Close ends the watch's goroutine and never reports an exit that did not happen.
func TestWatchExitCloseReleasesTheWatch(t *testing.T) {
	p := startChild(t, `echo ready; while :; do sleep 1; done`)
	before := runtime.NumGoroutine()
	var watches []*ExitWatch
	for range 50 {
		w, ok := WatchExit(p.PID, p.CreateTime)
		if !ok {
			t.Skip("no pidfd on this kernel")
		}
		watches = append(watches, w)
	}
	for _, w := range watches {
		w.Close()
		w.Close() // twice is fine
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines after closing 50 watches, %d before", n, before)
	}
	for _, w := range watches {
		select {
		case <-w.Exited:
			t.Fatal("a closed watch reported an exit while the process runs")
		default:
		}
	}
}
