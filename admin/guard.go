package admin

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MinTokenBytes is the shortest bearer token a Server accepts.
const MinTokenBytes = 16

// Media types the state-changing endpoints accept. None of them is a CORS "simple" content
// type (text/plain, application/x-www-form-urlencoded, multipart/form-data), so a web page on
// another origin cannot send such a request without a preflight, which the API never grants.
var (
	jsonTypes   = []string{"application/json"}
	configTypes = []string{"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json"}
	wasmTypes   = []string{"application/wasm", "application/octet-stream"}
)

// checkToken refuses a token shorter than MinTokenBytes (empty means none).
func checkToken(token string) error {
	if token != "" && len(token) < MinTokenBytes {
		return fmt.Errorf("admin: the token is %d bytes; at least %d are required", len(token), MinTokenBytes)
	}
	return nil
}

// CheckExposure reports why a Server with this address and token would refuse to start: a
// token shorter than MinTokenBytes, or no token on an address that is not loopback. Callers
// that start the server in the background use it to fail before that.
func CheckExposure(addr, token string) error {
	if addr == "" {
		addr = DefaultAddr
	}
	if err := checkToken(token); err != nil {
		return err
	}
	if token == "" && !isLoopbackAddr(addr) {
		return errNotLoopback(addr)
	}
	return nil
}

// hostPolicy says which Host and Origin values the API accepts: the names a client on this
// machine (or behind a configured proxy) uses to reach it. A web page whose DNS name was
// rebound to the admin address sends its own name in Host, and a cross-site request carries
// its page's origin in Origin; both are refused.
type hostPolicy struct {
	any      bool       // a Unix socket: no browser reaches it, every Host is fine
	port     string     // the listening port
	ip       netip.Addr // the listening IP, invalid when the address is a name or wildcard
	name     string     // the listening host when it is a name, lower case
	wildcard bool       // listening on every interface
	loopback bool       // loopback names are accepted (loopback or wildcard address)
	local    []netip.Addr
	extra    []allowedHost
}

// allowedHost is one of Server.AllowedHosts: a name (or IP) with an optional port.
type allowedHost struct {
	host string // lower case, without brackets
	port string // "" means any port
}

func newHostPolicy(a net.Addr, configured string, extra []string) *hostPolicy {
	p := &hostPolicy{}
	switch a := a.(type) {
	case *net.UnixAddr:
		p.any = true
		return p
	case *net.TCPAddr:
		p.port = strconv.Itoa(a.Port)
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			p.ip = ip.Unmap()
		}
	default:
		if a != nil {
			configured = a.String()
		}
	}
	if host, port, err := net.SplitHostPort(configured); err == nil {
		if p.port == "" || p.port == "0" {
			p.port = port
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if !p.ip.IsValid() {
				p.ip = ip.Unmap()
			}
		} else if host != "" {
			p.name = strings.ToLower(host)
		}
		if host == "" {
			p.wildcard = true
		}
	}
	if p.ip.IsValid() && p.ip.IsUnspecified() {
		p.wildcard = true
	}
	p.loopback = p.wildcard || p.ip.IsLoopback() || p.name == "localhost"
	if p.wildcard {
		p.local = interfaceAddrs()
	}
	for _, h := range extra {
		var e allowedHost
		if host, port, err := net.SplitHostPort(h); err == nil {
			e = allowedHost{host: host, port: port}
		} else {
			e = allowedHost{host: strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")}
		}
		e.host = strings.TrimSuffix(strings.ToLower(e.host), ".")
		p.extra = append(p.extra, e)
	}
	return p
}

// interfaceAddrs lists the machine's interface addresses, for a wildcard listener.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// allows reports whether hostport (a Host field, or the host of an Origin) names this
// server. defaultPort is the port a missing one stands for.
func (p *hostPolicy) allows(hostport, defaultPort string) bool {
	if p.any {
		return true
	}
	host, port := hostport, defaultPort
	if h, pt, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, pt
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	} else if strings.Contains(hostport, ":") {
		return false // a bare IPv6 literal or garbage
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, e := range p.extra {
		if e.host == host && (e.port == "" || e.port == port) {
			return true
		}
	}
	if port != p.port {
		return false
	}
	if host == "localhost" {
		return p.loopback
	}
	if p.name != "" && host == p.name {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	switch {
	case ip.Zone() != "":
		return false
	case p.ip.IsValid() && ip == p.ip:
		return true
	case ip.IsLoopback():
		return p.loopback
	}
	for _, a := range p.local {
		if a == ip {
			return true
		}
	}
	return false
}

// policy returns the host policy: the one for the listener once serving, otherwise one built
// from Addr (for a Handler mounted on another server).
func (s *Server) policy() *hostPolicy {
	if p := s.hosts.Load(); p != nil {
		return p
	}
	p := newHostPolicy(nil, s.addr(), s.AllowedHosts)
	if s.hosts.CompareAndSwap(nil, p) {
		return p
	}
	return s.hosts.Load()
}

var errCrossSite = errors.New("cross-site requests are not accepted")

// checkOrigin refuses requests from web pages: a Host that does not name this server (DNS
// rebinding), an Origin of another site, a browser's Sec-Fetch-Site: cross-site. Command-line
// clients send no Origin and pass.
func (s *Server) checkOrigin(r *http.Request) error {
	p := s.policy()
	if !p.allows(r.Host, "80") {
		return fmt.Errorf("host %q is not an address of the admin API (add it to admin.allowed_hosts if a proxy in front uses it)", r.Host)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); strings.EqualFold(site, "cross-site") {
		return errCrossSite
	}
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		return nil
	}
	if len(origins) > 1 {
		return errors.New("more than one Origin field")
	}
	o := origins[0]
	u, err := url.Parse(o)
	if o == "null" || err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return fmt.Errorf("origin %q is not accepted", o)
	}
	def := ""
	switch strings.ToLower(u.Scheme) {
	case "http":
		def = "80"
	case "https":
		def = "443"
	default:
		return fmt.Errorf("origin %q is not accepted", o)
	}
	if !p.allows(u.Host, def) {
		return fmt.Errorf("origin %q is not accepted: %w", o, errCrossSite)
	}
	return nil
}

// guard applies checkOrigin to every request before anything else.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkOrigin(r); err != nil {
			s.logger().Warn("admin: request refused", "remote", r.RemoteAddr, "method", r.Method,
				"path", r.URL.Path, "host", r.Host, "origin", r.Header.Get("Origin"), "err", err)
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// accepts wraps a state-changing handler: the request must declare one of types as its
// Content-Type, else 415 with Accept-Post (RFC 9110 section 15.5.16). A body-less request
// is no exception, so a page cannot send one with fetch(..., {mode: "no-cors"}).
func accepts(types []string, next http.HandlerFunc) http.HandlerFunc {
	list := strings.Join(types, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && len(r.Header.Values("Content-Type")) == 1
		if ok {
			ok = false
			for _, t := range types {
				if strings.EqualFold(mt, t) {
					ok = true
					break
				}
			}
		}
		if !ok {
			if r.Method == http.MethodPost {
				w.Header().Set("Accept-Post", list)
			}
			msg := "missing Content-Type: send one of " + list
			if ct != "" {
				msg = fmt.Sprintf("unsupported Content-Type %q: send one of %s", ct, list)
			}
			writeError(w, http.StatusUnsupportedMediaType, msg)
			return
		}
		next(w, r)
	}
}
