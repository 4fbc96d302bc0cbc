package localregistry

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func entry(id string) Entry {
	return Entry{ID: id, PID: 1, Port: 9000, State: StateReady, StartedAt: time.Now(), Sync: SyncOff}
}

func TestCorruptFileIsMovedAsideAndRegistryStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte(`{"schema":1,"entries":[{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("open with a corrupt file: %v", err)
	}
	if n := len(r.List()); n != 0 {
		t.Fatalf("corrupt registry gave %d entries", n)
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !strings.Contains(string(b), `"entries"`) {
		t.Fatal("moved-aside file lost its content")
	}
	if err := r.Put(entry("worker-llm-1")); err != nil {
		t.Fatal(err)
	}
}

func TestNewerSchemaIsLeftUntouched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	os.WriteFile(path, []byte(`{"schema":99,"entries":[]}`), 0o600)
	if _, err := Open(dir, nil); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"schema":99,"entries":[]}` {
		t.Fatal("newer file was changed")
	}
}

// Two instances (two app processes in real life) writing one registry at once lose
// nothing: each transaction re-reads under the file lock.
func TestTwoInstancesDoNotLoseWrites(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i, r := range []*Registry{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				if err := r.Put(entry(fmt.Sprintf("w-%d-%d", i, j))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.List()); n != 50 {
		t.Fatalf("registry holds %d entries after concurrent writes, want 50", n)
	}
}

func TestSubscribeSeesChangesOfAnotherInstance(t *testing.T) {
	dir := t.TempDir()
	a, _ := Open(dir, nil)
	b, _ := Open(dir, nil)
	ch, unsub := a.Subscribe()
	defer unsub()
	if err := b.Put(entry("worker-llm-7")); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-ch:
		if c.Kind != Added || c.Entry.ID != "worker-llm-7" {
			t.Fatalf("change = %+v", c)
		}
	default:
		t.Fatal("no change delivered after reload")
	}
	if _, err := a.Modify("nope", func(*Entry) {}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("modify unknown: %v", err)
	}
}

// Two transactions must not publish their changes in reverse order: a subscriber's last
// event for an id would then be stale while the registry holds a newer state.
func TestSubscribersSeeConcurrentUpdatesInCommitOrder(t *testing.T) {
	r, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const id = "worker-llm-1"
	if err := r.Put(entry(id)); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25 // 200 changes: within a subscriber's buffer of 256
	for round := 0; round < 10; round++ {
		subs := make([]<-chan Change, 3)
		for i := range subs {
			ch, unsub := r.Subscribe()
			defer unsub()
			subs[i] = ch
		}
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					// Port counts the commits: each transaction publishes the next number.
					if _, err := r.Modify(id, func(e *Entry) { e.Port++ }); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		final, _ := r.Get(id)
		for i, ch := range subs {
			prev, n := 0, 0
		drain:
			for {
				select {
				case c := <-ch:
					if c.Entry.Port <= prev {
						t.Fatalf("round %d subscriber %d: event port %d after %d: published out of commit order", round, i, c.Entry.Port, prev)
					}
					prev = c.Entry.Port
					n++
				default:
					break drain
				}
			}
			if n != workers*each || prev != final.Port {
				t.Fatalf("round %d subscriber %d: %d events, last port %d; registry has %d", round, i, n, prev, final.Port)
			}
		}
	}
}
