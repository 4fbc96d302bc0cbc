// Package httpguard owns the HTTP guards the worker and the Queen share against web pages
// and strangers: the Host check (DNS rebinding), the Origin check (cross-site requests,
// with CORS for allowed origins), the JSON content type, a deadline on reading request
// bodies and a cap on the connections one client holds. docs/security.md says why.
package httpguard

import (
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// DefaultBodyTimeout bounds reading one request body: a client that trickles its body
// holds a connection this long at most. Far beyond what a prompt of a few MiB needs.
const DefaultBodyTimeout = 30 * time.Second

// Config says which Hosts and Origins a server accepts besides its own.
type Config struct {
	// AllowedHosts are Host names or addresses accepted besides loopback and this
	// machine's own names and addresses: "*" accepts any Host, ".example.com" (or
	// "*.example.com") any name under example.com.
	AllowedHosts []string
	// AllowedOrigins are the browser Origins that may call the server besides
	// same-origin pages on loopback: "http://localhost:3000" exactly, "http://host:*"
	// on any port, "*" any origin. Allowed cross-origin callers get CORS headers.
	AllowedOrigins []string
	// BodyTimeout bounds reading a request body; default DefaultBodyTimeout.
	BodyTimeout time.Duration
}

// Guard checks every request's Host and Origin and bounds the time its body takes.
type Guard struct {
	anyHost     bool
	hosts       map[string]bool // lower-case names and canonical addresses
	hostSuffix  []string        // ".example.com"
	anyOrigin   bool
	origins     map[string]bool // "scheme://host[:port]", lower case
	originHosts map[string]bool // "scheme://host" of "scheme://host:*"
	bodyTimeout time.Duration
	own         *ownNames
}

// New checks cfg and builds a Guard.
func New(cfg Config) (*Guard, error) {
	g := &Guard{
		hosts: map[string]bool{}, origins: map[string]bool{}, originHosts: map[string]bool{},
		bodyTimeout: cfg.BodyTimeout, own: &ownNames{},
	}
	if g.bodyTimeout <= 0 {
		g.bodyTimeout = DefaultBodyTimeout
	}
	for _, h := range cfg.AllowedHosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		switch {
		case h == "":
		case h == "*":
			g.anyHost = true
		case strings.HasPrefix(h, "*.") || strings.HasPrefix(h, "."):
			g.hostSuffix = append(g.hostSuffix, h[strings.IndexByte(h, '.'):])
		case strings.ContainsAny(h, "/@ "):
			return nil, fmt.Errorf("allowed host %q: give a host name or address, without scheme, port or path", h)
		default:
			if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
				h = ip.Unmap().String()
			}
			g.hosts[h] = true
		}
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
		switch {
		case o == "":
		case o == "*":
			g.anyOrigin = true
		case o == "null":
			g.origins[o] = true // sandboxed frames and file:// pages, only when named
		case strings.HasSuffix(o, ":*"):
			base := strings.TrimSuffix(o, ":*")
			if _, err := parseOrigin(base); err != nil {
				return nil, fmt.Errorf("allowed origin %q: %w", o, err)
			}
			g.originHosts[base] = true
		default:
			u, err := parseOrigin(o)
			if err != nil {
				return nil, fmt.Errorf("allowed origin %q: %w", o, err)
			}
			g.origins[u.Scheme+"://"+u.Host] = true
		}
	}
	return g, nil
}

// parseOrigin checks that s is an origin: scheme://host[:port] and nothing more.
func parseOrigin(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("write an origin as scheme://host[:port], such as http://localhost:3000")
	}
	return u, nil
}

// Handler runs the Host and Origin checks before next, answers CORS preflights of
// allowed origins, and puts a deadline on reading the request body.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.HostAllowed(r.Host) {
			wire.WriteError(w, wire.NewError(http.StatusForbidden, wire.CodeForbidden,
				"Host %q is not a name of this machine, so the request is refused (a web page can point its own name at this address: DNS rebinding); if clients reach this server by that name, start it with --allowed-hosts %s",
				r.Host, hostOnly(r.Host)))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			allowed, cors := g.originAllowed(origin, r.Host)
			if !allowed {
				wire.WriteError(w, wire.NewError(http.StatusForbidden, wire.CodeForbidden,
					"requests from web pages at %q are refused: a page must not act on your workers; if that page is yours, start this server with --allowed-origins %s",
					origin, origin))
				return
			}
			if cors {
				h := w.Header()
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
				if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
					h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
					h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
					h.Set("Access-Control-Max-Age", "600")
					w.WriteHeader(http.StatusNoContent)
					return
				}
			}
		}
		g.limitBodyTime(w, r)
		next.ServeHTTP(w, r)
	})
}

// hostOnly strips the port of a Host value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// HostAllowed reports whether a Host header value names this server: a loopback or
// unspecified address, one of this machine's addresses or names, localhost (and names
// under .localhost, which browsers resolve to loopback themselves), or a configured
// host. An empty Host (HTTP/1.0, not a browser) is accepted.
func (g *Guard) HostAllowed(hostport string) bool {
	if hostport == "" || g.anyHost {
		return true
	}
	host := strings.TrimSuffix(strings.ToLower(hostOnly(hostport)), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap().WithZone("")
		return ip.IsLoopback() || ip.IsUnspecified() || g.hosts[ip.String()] || g.own.hasAddr(ip)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || g.hosts[host] {
		return true
	}
	for _, suffix := range g.hostSuffix {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return g.own.hasName(host)
}

// originAllowed reports whether a request carrying this Origin header may proceed, and
// whether it needs CORS headers (a cross-origin caller that is allowed).
func (g *Guard) originAllowed(origin, host string) (allowed, cors bool) {
	o := strings.ToLower(origin)
	if u, err := url.Parse(o); err == nil && u.Host != "" {
		// A page on loopback served by this very server (same origin).
		if strings.EqualFold(u.Host, host) && isLoopbackName(u.Hostname()) {
			return true, false
		}
		if g.originHosts[u.Scheme+"://"+u.Hostname()] || g.originHosts[u.Scheme+"://["+u.Hostname()+"]"] {
			return true, true
		}
		o = u.Scheme + "://" + u.Host
	}
	if g.anyOrigin || g.origins[o] {
		return true, true
	}
	return false, false
}

func isLoopbackName(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// limitBodyTime sets a read deadline for the body of r and clears it once the body has
// been read, so a long streamed answer is never cut (http.Server.ReadTimeout would also
// end the request's context mid-stream, which cancels generation).
func (g *Guard) limitBodyTime(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(g.bodyTimeout)); err != nil {
		return // not served by net/http's server (a test recorder): nothing to bound
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
}

// deadlineBody clears the connection's read deadline once the whole body has been
// read. After any other error the deadline stays: the server then discards what is left
// of the body under it, instead of waiting on a client that trickles.
type deadlineBody struct {
	io.ReadCloser
	clear func()
	once  sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.clear)
	}
	return n, err
}

// RequireJSON refuses a body that does not say it is JSON (415): a web page can send
// text/plain or a form to any address without asking, but not application/json.
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/json" {
		return nil
	}
	got := "none"
	if ct != "" {
		got = fmt.Sprintf("%q", ct)
	}
	return wire.NewError(http.StatusUnsupportedMediaType, wire.CodeUnsupportedMediaType,
		"%s %s takes a JSON body: send the header Content-Type: application/json (got %s)", r.Method, r.URL.Path, got)
}

// ownNames is this machine's host name and interface addresses, re-read on a miss at
// most once a second (addresses come and go with DHCP and VPNs).
type ownNames struct {
	mu     sync.Mutex
	read   time.Time
	addrs  map[netip.Addr]bool
	names  map[string]bool
	reread func() (map[netip.Addr]bool, map[string]bool) // tests replace it
}

func (o *ownNames) hasAddr(ip netip.Addr) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.addrs[ip] {
		return true
	}
	o.refresh()
	return o.addrs[ip]
}

func (o *ownNames) hasName(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.names[name] {
		return true
	}
	o.refresh()
	return o.names[name]
}

// refresh re-reads the names and addresses unless it did within the last second.
// The caller holds o.mu.
func (o *ownNames) refresh() {
	if time.Since(o.read) < time.Second {
		return
	}
	o.read = time.Now()
	reread := o.reread
	if reread == nil {
		reread = readOwnNames
	}
	o.addrs, o.names = reread()
}

func readOwnNames() (map[netip.Addr]bool, map[string]bool) {
	addrs, names := map[netip.Addr]bool{}, map[string]bool{}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				addrs[p.Addr().Unmap().WithZone("")] = true
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		names[h] = true
		names[h+".local"] = true // the name mDNS gives this machine on the LAN
	}
	return addrs, names
}
