package testenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// LoopbackDialer dials only addresses on this machine and records every refusal, so a
// test that registers a worker at 10.0.0.7 or gpu-box.lan sends no traffic beyond it:
// names other than localhost are refused before any DNS lookup.
type LoopbackDialer struct {
	mu      sync.Mutex
	refused []string
}

// DialContext has net.Dialer.DialContext's shape.
func (d *LoopbackDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		d.mu.Lock()
		d.refused = append(d.refused, addr)
		d.mu.Unlock()
		return nil, fmt.Errorf("test network guard: %s is not on this machine; tests only reach loopback", addr)
	}
	return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
}

// Refused lists the addresses the dialer refused, in order.
func (d *LoopbackDialer) Refused() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.refused...)
}
