// Package chaos is Beekeeper's fault-injection soak: real Queen, hive and worker
// processes, a seeded fault schedule and invariants checked throughout (see
// docs/chaos.md). This file is its TCP fault proxy; the soak itself is chaos_test.go.
package chaos

import (
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP fault proxy between a hive (and its workers) and the Queen: it forwards
// every connection to its target, and on request delays every chunk (a slow link) or
// resets every connection, open or new (a resetting link). It is the two toxics the soak
// needs of Shopify/toxiproxy, without its module graph.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	latency time.Duration
	reset   bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewProxy listens on listen (host:port, port 0 for any) and forwards to target.
func NewProxy(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk in both directions by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// SetReset, when on, resets (RST) every open connection and every new one until it is
// turned off.
func (p *Proxy) SetReset(on bool) {
	p.mu.Lock()
	p.reset = on
	var open []net.Conn
	if on {
		for c := range p.conns {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		rst(c)
	}
}

// Close stops listening and resets every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.SetReset(true)
	p.wg.Wait()
}

func rst(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST, not FIN
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		resetting := p.reset
		if !resetting {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if resetting {
			rst(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 3*time.Second)
	if err != nil {
		p.drop(c)
		rst(c)
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, c); done <- struct{}{} }()
	go func() { p.pipe(c, up); done <- struct{}{} }()
	<-done
	// One side ended: end both, so the other copy returns too.
	_ = c.Close()
	_ = up.Close()
	<-done
	p.drop(c)
	p.drop(up)
}

func (p *Proxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pipe copies src to dst chunk by chunk, each delayed by the latency of the moment.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.latency
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d) // the toxic itself: this chunk arrives d late
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}
