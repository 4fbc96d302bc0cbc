package queen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// DialFunc opens a connection, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// cgnat is the shared address space of RFC 6598, where carrier NATs and mesh VPNs
// (Tailscale) put machines: private in all but name.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// thisNetwork is 0.0.0.0/8: "this host on this network", which Linux connects to itself.
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// ErrWorkerAddress is the cause of every address the worker-network policy refuses.
var ErrWorkerAddress = errors.New("worker address refused")

// netPolicy says which addresses the Queen may reach workers at: never link-local
// (169.254.0.0/16 holds cloud metadata services), unspecified, multicast or broadcast;
// within networks when they are set, else any loopback or private address. It keeps the
// gateway and the capabilities fetch from serving as a proxy into other machines.
type netPolicy struct {
	networks []netip.Prefix // nil: loopback, private (RFC 1918, fc00::/7) and 100.64.0.0/10
}

// check refuses an address the Queen must not reach a worker at.
func (p netPolicy) check(ip netip.Addr) error {
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: %s is a multicast or broadcast address: give the worker's own address", ErrWorkerAddress, ip)
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("%w: %s is link-local (where cloud metadata services answer): give the worker's routable address", ErrWorkerAddress, ip)
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return fmt.Errorf("%w: %s names no one host: give the worker's own address", ErrWorkerAddress, ip)
	}
	if p.networks == nil {
		if ip.IsLoopback() || ip.IsPrivate() || cgnat.Contains(ip) {
			return nil
		}
		return fmt.Errorf("%w: %s is not a loopback or private address: start the Queen with --worker-networks naming the workers' networks (CIDRs, e.g. %s)",
			ErrWorkerAddress, ip, suggestPrefix(ip))
	}
	for _, n := range p.networks {
		if n.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is outside the Queen's --worker-networks %s", ErrWorkerAddress, ip, p.String())
}

func (p netPolicy) String() string {
	if p.networks == nil {
		return "loopback and private addresses"
	}
	s := make([]string, len(p.networks))
	for i, n := range p.networks {
		s[i] = n.String()
	}
	return strings.Join(s, ",")
}

func suggestPrefix(ip netip.Addr) string {
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// checkHost checks a registered hostname when it is an address; a name is checked
// when it is dialled, once it resolves.
func (p netPolicy) checkHost(host string) error {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return p.check(ip)
}

// defaultDial dials with the policy checked on every address a name resolves to, before
// connecting (net.Dialer's Control runs between resolution and connect).
func (p netPolicy) defaultDial() DialFunc {
	d := &net.Dialer{
		Timeout:   3 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrWorkerAddress, address)
			}
			return p.check(ap.Addr())
		},
	}
	return d.DialContext
}

// wrap checks the policy around any dialer: an address is refused before dialling, and
// the address a name was connected to is checked once connected (so a dialer supplied by
// an embedder or a test is held to the policy too).
func (p netPolicy) wrap(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if err := p.checkHost(host); err != nil {
			return nil, err
		}
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
			if err := p.check(ap.Addr()); err != nil {
				conn.Close()
				return nil, err
			}
		}
		return conn, nil
	}
}

// ParseNetworks reads a comma-separated list of CIDRs (a bare address is one host), as
// --worker-networks takes them.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if ip, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("worker network %q: write a CIDR such as 10.0.0.0/8 or fd00::/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
