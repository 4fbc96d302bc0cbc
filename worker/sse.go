package worker

import (
	"net/http"
	"sync"
	"time"
)

// lingerFor is how long the writer keeps checking for new events on its own timer after a
// write, before it goes idle and needs a poke. While tokens come faster than this, the
// decode loop wakes no thread at all; an event waits at most this long (a slow stream gets
// every event at once, the first one always).
const lingerFor = 300 * time.Microsecond

// sseWriter sends a stream's events from its own goroutine, so the decode loop never does
// network I/O: a write to a loopback socket runs the receive path and wakes the client in
// the writer's context. The decode goroutine appends ready-made events to pending and, if
// the writer is idle, pokes it; the writer takes everything pending at once (several
// events in one write when it fell behind) and swaps buffers, so steady state allocates
// nothing. llama-server decouples its HTTP writes from its inference loop the same way.
//
// Waking an idle thread costs the waker a cross-CPU wake-up (on this 2-vCPU VM ≈ as much
// as the write itself), so after a write the writer lingers: it looks again after
// lingerFor without being poked, and only goes idle when nothing came.
//
// The writer starts with the first event and exits after close (or a write error), always
// before the handler returns: close waits for it, and the ResponseWriter is not touched
// after close returns.
type sseWriter struct {
	rw   http.ResponseWriter
	rc   *http.ResponseController
	wake chan struct{} // buffered 1: a poke never blocks, pokes coalesce
	done chan struct{} // closed when the writer goroutine has exited

	mu        sync.Mutex
	pending   []byte // events not yet handed to the writer
	err       error  // the first write error; later sends report it
	closing   bool   // no more events: write what is pending, then exit
	running   bool   // the writer goroutine has started
	lingering bool   // the writer looks at pending on its own timer: no poke needed
}

func newSSEWriter(rw http.ResponseWriter) *sseWriter {
	return &sseWriter{rw: rw, rc: http.NewResponseController(rw), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// send queues one event (copied: the caller may reuse it) and wakes the writer if it is
// idle. It returns the write error that ended the stream, if any: the generation should
// stop (the request context is cancelled too when the client hangs up).
func (s *sseWriter) send(event []byte) error {
	s.mu.Lock()
	if s.err != nil || s.closing {
		err := s.err
		s.mu.Unlock()
		return err
	}
	s.pending = append(s.pending, event...)
	if !s.running {
		s.running = true
		go s.run()
	}
	lingering := s.lingering
	s.mu.Unlock()
	if !lingering {
		s.poke()
	}
	return nil
}

func (s *sseWriter) poke() {
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already due; it will see this event too
	}
}

// close lets the writer send what is pending and waits for it to exit. Safe to call more
// than once.
func (s *sseWriter) close() {
	s.mu.Lock()
	s.closing = true
	running := s.running
	s.mu.Unlock()
	if !running {
		return
	}
	s.poke() // even a lingering writer: the end goes out at once
	<-s.done
}

// run is the writer goroutine: one Write + Flush for everything pending per wake-up.
func (s *sseWriter) run() {
	defer close(s.done)
	timer := time.NewTimer(lingerFor)
	defer timer.Stop()
	var out []byte // the buffer being written; the other one is pending
	lingering := false
	for {
		if lingering {
			timer.Reset(lingerFor)
			select {
			case <-s.wake:
			case <-timer.C:
			}
		} else {
			<-s.wake
		}
		s.mu.Lock()
		out, s.pending = s.pending, out[:0]
		closing := s.closing
		lingering = len(out) > 0 // events keep coming: look again soon
		s.lingering = lingering
		s.mu.Unlock()

		var err error
		if len(out) > 0 {
			if _, err = s.rw.Write(out); err == nil {
				err = s.rc.Flush()
			}
		}
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		if closing {
			return
		}
	}
}
