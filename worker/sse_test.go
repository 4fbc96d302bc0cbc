package worker

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// sinkWriter is a ResponseWriter that keeps (or discards) what is written and can fail.
type sinkWriter struct {
	mu      sync.Mutex
	header  http.Header
	keep    bool
	got     bytes.Buffer
	writes  int
	flushes int
	failAt  int // the write that fails (1-based); 0 = never
}

var errSinkGone = errors.New("sink: client gone")

func (w *sinkWriter) Header() http.Header { return w.header }
func (w *sinkWriter) WriteHeader(int)     {}
func (w *sinkWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	if w.failAt > 0 && w.writes >= w.failAt {
		return 0, errSinkGone
	}
	if w.keep {
		w.got.Write(b)
	}
	return len(b), nil
}
func (w *sinkWriter) Flush() {
	w.mu.Lock()
	w.flushes++
	w.mu.Unlock()
}

// TestSSEWriterSendsEveryEventInOrder guards the hand-over to the writer goroutine: every
// event arrives, whole and in order, and close returns only once all is written.
func TestSSEWriterSendsEveryEventInOrder(t *testing.T) {
	sink := &sinkWriter{header: http.Header{}, keep: true}
	s := newSSEWriter(sink)
	var want bytes.Buffer
	event := make([]byte, 0, 64)
	for i := range 5000 {
		event = fmt.Appendf(event[:0], "data: {\"n\":%d}\n\n", i)
		want.Write(event)
		if err := s.send(event); err != nil { // event is reused: send must copy
			t.Fatal(err)
		}
	}
	s.close()
	s.close() // idempotent
	if !bytes.Equal(sink.got.Bytes(), want.Bytes()) {
		t.Fatalf("written %d bytes differ from the %d sent", sink.got.Len(), want.Len())
	}
	if sink.flushes != sink.writes || sink.writes == 0 || sink.writes > 5000 {
		t.Fatalf("%d writes, %d flushes for 5000 events: want one flush per write", sink.writes, sink.flushes)
	}
}

// TestSSEWriterWriteErrorStopsSends guards "a gone client stops the generation": after a
// failed write, send reports the error, and close does not hang.
func TestSSEWriterWriteErrorStopsSends(t *testing.T) {
	sink := &sinkWriter{header: http.Header{}, failAt: 2}
	s := newSSEWriter(sink)
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		err = s.send([]byte("data: {}\n\n"))
	}
	if !errors.Is(err, errSinkGone) {
		t.Fatalf("send after a failed write: %v, want %v", err, errSinkGone)
	}
	s.close()
}

// TestSSEWriterCloseWithoutEvents: a stream that never sent starts no goroutine and
// close returns at once.
func TestSSEWriterCloseWithoutEvents(t *testing.T) {
	s := newSSEWriter(&sinkWriter{header: http.Header{}})
	s.close()
	if s.running {
		t.Fatal("the writer started without an event")
	}
}

// TestEmitDoesNotAllocate guards the per-token path of a streamed answer: building the
// event and handing it to the writer allocates nothing in steady state.
func TestEmitDoesNotAllocate(t *testing.T) {
	sink := &sinkWriter{header: http.Header{}}
	out := newResponder(sink, textFormat, "stories260K", true, false)
	defer out.close()
	piece := []byte(" Lily")
	for range 100 { // warm: both buffers grown
		if err := out.emit(piece); err != nil {
			t.Fatal(err)
		}
	}
	if allocs := testing.AllocsPerRun(2000, func() { _ = out.emit(piece) }); allocs != 0 {
		t.Fatalf("emit allocates %.2f times per token, want 0", allocs)
	}
}
