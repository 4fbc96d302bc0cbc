package spawner

import (
	"fmt"
	"net"
	"strconv"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// FreePort returns the first port in min..max (defaults 8080..8200) that host can bind
// and that skip does not name. Binding is the only honest test: another program may hold
// the port on any address.
func FreePort(host string, min, max int, skip map[int]bool) (int, error) {
	if min <= 0 {
		min = wire.DefaultPortMin
	}
	if max <= 0 {
		max = wire.DefaultPortMax
	}
	if min > max {
		return 0, fmt.Errorf("port range %d..%d is empty: PortMin must not exceed PortMax", min, max)
	}
	for port := min; port <= max; port++ {
		if skip[port] {
			continue
		}
		if PortFree(host, port) {
			return port, nil
		}
	}
	return 0, &StartError{Kind: ErrNoFreePort, ExitCode: -1, Err: fmt.Errorf("ports %d..%d on %s are all taken", min, max, host)}
}

// PortFree reports whether host:port can be bound now (on the wildcard address too, when
// host is loopback, so a squatter on 0.0.0.0 counts as taken).
func PortFree(host string, port int) bool {
	if host == "" {
		host = wire.DefaultHost
	}
	for _, h := range probeHosts(host) {
		l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

func probeHosts(host string) []string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return []string{host, wire.DefaultHost}
	}
	return []string{host}
}
