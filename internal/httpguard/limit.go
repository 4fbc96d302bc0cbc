package httpguard

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// DefaultMaxConnsPerClient is how many connections one client address may hold open at
// once: far more than a Queen routing to a worker, or a machine's workers heartbeating
// to a Queen, ever hold; few enough that one address cannot take every file descriptor.
const DefaultMaxConnsPerClient = 256

// maxRefusing bounds the refused connections being answered at once; past it a refused
// connection is closed without an answer.
const maxRefusing = 64

// LimitListener caps the connections each client address holds open at once at
// perClient (0 or less: no cap). A connection past the cap gets a 429 answer and is
// closed; the listener goes on accepting the others.
func LimitListener(ln net.Listener, perClient int) net.Listener {
	if perClient <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, max: perClient, open: map[netip.Addr]int{}, refusing: make(chan struct{}, maxRefusing)}
}

type limitListener struct {
	net.Listener
	max      int
	refusing chan struct{} // a semaphore: refusals being answered

	mu   sync.Mutex
	open map[netip.Addr]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return c, nil // not an IP connection: nothing to count
		}
		ip := ap.Addr().Unmap().WithZone("")
		l.mu.Lock()
		if l.open[ip] >= l.max {
			l.mu.Unlock()
			l.refuse(c)
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

// refuse answers 429 on a connection past the cap and closes it. The answer is written
// by a goroutine that ends within a second: it reads what the client sent, so closing
// does not reset the connection before the client reads the answer.
func (l *limitListener) refuse(c net.Conn) {
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close() // a flood of refusals: no answer for this one
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		body, _ := json.Marshal(wire.ErrorBody{Error: wire.NewError(http.StatusTooManyRequests, wire.CodeBusy,
			"this address already holds %d connections to this server: close some, or raise the server's --max-conns-per-client", l.max).Detail})
		_, _ = fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// limitConn gives its slot back when closed (once, however often Close is called).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
