package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/verge-edge/verge/upstream"
)

// FetchPolicy decides where a worker's subrequests may connect. By default only the public
// internet is reachable: loopback, private (RFC 1918, ULA fc00::/7), carrier-grade NAT
// (100.64.0.0/10), link-local (cloud metadata at 169.254.169.254 and fd00:ec2::254
// included), unspecified, multicast, broadcast, documentation, benchmarking and other
// special-purpose addresses are refused, in every IPv6 form that embeds one (IPv4-mapped,
// IPv4-compatible, NAT64, 6to4, Teredo), and so are Verge's own listeners. The check is
// made on the addresses a name resolves to, and again on the address each connection is
// dialed to (the dialer's Control hook), so DNS rebinding between the two cannot bypass it.
type FetchPolicy struct {
	// Allow opens destinations the default refuses. Each entry is one of:
	//   - a CIDR prefix, "10.1.0.0/16" or "fd00:1::/64": those addresses, any port;
	//   - an address, "10.1.2.3" or "::1": that address, any port;
	//   - an address and port, "127.0.0.1:8080" or "[::1]:8080": that address and port only
	//     (the only way to reach one of Verge's own listeners other than the admin API's);
	//   - a host name and port, "api.internal:8443": requests to that host and port,
	//     whatever it resolves to.
	// The admin API's listener is never reachable.
	Allow []string
}

// ErrRefused is wrapped by the error of a subrequest the fetch policy refuses.
var ErrRefused = errors.New("refused by the worker's fetch policy")

// Listener is an address Verge itself listens on (Services.Listeners).
type Listener struct {
	// Addr is the bound address; an unspecified IP (0.0.0.0, ::) means every local address.
	Addr netip.AddrPort
	// Admin marks the admin API's listener: never reachable from a worker.
	Admin bool
}

// egress is a parsed FetchPolicy with the registry's view of its own listeners.
type egress struct {
	prefixes  []netip.Prefix
	addrPorts []netip.AddrPort
	hostPorts map[string]bool // lowercased "host:port"
	listeners func() []Listener
}

// ParseFetchAllow parses one FetchPolicy.Allow entry; config validation uses it.
func ParseFetchAllow(s string) (prefix netip.Prefix, addrPort netip.AddrPort, hostPort string, err error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), netip.AddrPort{}, "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), netip.AddrPort{}, "", nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Port() != 0 {
		return netip.Prefix{}, netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()), "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/[]") {
		return netip.Prefix{}, netip.AddrPort{}, "", fmt.Errorf("fetch allow %q: want a CIDR prefix, an IP address, ip:port or host:port", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return netip.Prefix{}, netip.AddrPort{}, "", fmt.Errorf("fetch allow %q: bad port %q", s, port)
	}
	return netip.Prefix{}, netip.AddrPort{}, strings.ToLower(host) + ":" + port, nil
}

func newEgress(p FetchPolicy, listeners func() []Listener) (*egress, error) {
	e := &egress{hostPorts: map[string]bool{}, listeners: listeners}
	for _, s := range p.Allow {
		prefix, ap, hp, err := ParseFetchAllow(s)
		switch {
		case err != nil:
			return nil, err
		case prefix.IsValid():
			e.prefixes = append(e.prefixes, prefix)
		case ap.IsValid():
			e.addrPorts = append(e.addrPorts, ap)
		default:
			e.hostPorts[hp] = true
		}
	}
	return e, nil
}

// allowedName reports whether host:port is allowed by name, whatever it resolves to.
func (e *egress) allowedName(host, port string) bool {
	return len(e.hostPorts) > 0 && e.hostPorts[strings.ToLower(host)+":"+port]
}

// check returns nil when a connection to ap is allowed, else an error wrapping ErrRefused
// that says why. byName is true when the request's host:port is allowed by name.
func (e *egress) check(ap netip.AddrPort, byName bool) error {
	a := ap.Addr().Unmap().WithZone("")
	ap = netip.AddrPortFrom(a, ap.Port())
	if l, ok := e.ownListener(ap); ok {
		if l.Admin {
			return fmt.Errorf("%s is Verge's admin API: %w", ap, ErrRefused)
		}
		if byName || e.exact(ap) {
			return nil
		}
		return fmt.Errorf("%s is one of Verge's own listeners (allow it as ip:port to reach it): %w", ap, ErrRefused)
	}
	if byName || e.exact(ap) {
		return nil
	}
	for _, p := range e.prefixes {
		if p.Contains(a) {
			return nil
		}
	}
	if why := special(a); why != "" {
		return fmt.Errorf("%s is %s (not in the worker's fetch allow list): %w", a, why, ErrRefused)
	}
	return nil
}

func (e *egress) exact(ap netip.AddrPort) bool {
	for _, x := range e.addrPorts {
		if x == ap {
			return true
		}
	}
	return false
}

// ownListener reports whether ap is one of Verge's listeners. A listener bound to an
// unspecified address matches every address of this machine (loopback or an interface's).
func (e *egress) ownListener(ap netip.AddrPort) (Listener, bool) {
	if e.listeners == nil {
		return Listener{}, false
	}
	var local []netip.Addr
	for _, l := range e.listeners() {
		if l.Addr.Port() != ap.Port() {
			continue
		}
		la := l.Addr.Addr().Unmap()
		if la == ap.Addr() {
			return l, true
		}
		if !la.IsUnspecified() {
			continue
		}
		if ap.Addr().IsLoopback() || ap.Addr().IsUnspecified() {
			return l, true
		}
		if local == nil {
			local = localAddrs()
		}
		for _, x := range local {
			if x == ap.Addr() {
				return l, true
			}
		}
	}
	return Listener{}, false
}

// localAddrRefresh is how long the machine's interface addresses are remembered: listing
// them (a netlink dump, about 90 µs and 44 allocations) for each check would cost every
// subrequest to the port of a listener bound to all addresses (":443") twice that. An
// address added to an interface is known as Verge's own within this time.
const localAddrRefresh = time.Second

var localCache struct {
	sync.Mutex
	at    time.Time
	addrs []netip.Addr
}

// localAddrs returns the addresses of this machine's interfaces.
func localAddrs() []netip.Addr {
	localCache.Lock()
	defer localCache.Unlock()
	if now := time.Now(); localCache.addrs == nil || now.Sub(localCache.at) >= localAddrRefresh {
		localCache.addrs, localCache.at = listLocalAddrs(), now
	}
	return localCache.addrs
}

func listLocalAddrs() []netip.Addr {
	out := []netip.Addr{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, x.Unmap())
			}
		}
	}
	return out
}

// specialRange is a range of addresses that are not the public internet, and why.
type specialRange struct {
	p   netip.Prefix
	why string
}

// specialV4 are IPv4 ranges that are not the public internet (RFC 6890 and successors),
// besides those netip classifies (loopback, private, link-local, multicast, unspecified).
var specialV4 = []specialRange{
	{netip.MustParsePrefix("0.0.0.0/8"), `in "this network" (0.0.0.0/8)`},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("192.88.99.0/24"), "a 6to4 relay address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address (240.0.0.0/4, broadcast included)"},
}

var specialV6 = []specialRange{
	{netip.MustParsePrefix("::/96"), "an IPv4-compatible IPv6 address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001::/32"), "a Teredo address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("2001:10::/28"), "an ORCHID address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

var (
	metadataV4 = netip.MustParseAddr("169.254.169.254") // cloud metadata services
	metadataV6 = netip.MustParseAddr("fd00:ec2::254")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	sixTo      = netip.MustParsePrefix("2002::/16")
)

// special returns why a is not a public internet address, or "" when it is.
func special(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "not an address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLoopback():
		return "a loopback address"
	case a == metadataV4 || a == metadataV6:
		return "the cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsPrivate():
		return "a private address"
	case a.IsMulticast():
		return "a multicast address"
	}
	ranges := specialV6
	if a.Is4() {
		ranges = specialV4
	}
	for _, s := range ranges {
		if s.p.Contains(a) {
			return s.why
		}
	}
	if a.Is4() {
		return ""
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		if why := special(netip.AddrFrom4([4]byte(b[12:16]))); why != "" {
			return "NAT64 of " + why
		}
	case sixTo.Contains(a):
		if why := special(netip.AddrFrom4([4]byte(b[2:6]))); why != "" {
			return "6to4 of " + why
		}
	}
	return ""
}

// egressKey carries the policy of one subrequest to the guarded dialer.
type egressKey struct{}

type egressCtx struct {
	e      *egress
	byName bool
}

// guardedDial is the dialer of the registry's own subrequest transport: its Control hook
// checks the address each socket is about to connect to, after name resolution, against
// the policy of the subrequest in ctx. A dial without a policy is refused.
func guardedDial(d *net.Dialer) upstream.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		pc, _ := ctx.Value(egressKey{}).(*egressCtx)
		if pc == nil {
			return nil, fmt.Errorf("dial %s: no fetch policy: %w", addr, ErrRefused)
		}
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dial %s: %w", address, ErrRefused)
			}
			return pc.e.check(ap, pc.byName)
		}
		return dd.DialContext(ctx, network, addr)
	}
}

// newFetchTransport returns the registry's subrequest transport: its own connection pool,
// dialing through guardedDial.
func newFetchTransport() *upstream.Transport {
	d := &net.Dialer{KeepAlive: 15 * time.Second}
	return &upstream.Transport{DialContext: guardedDial(d)}
}

// resolveFetch checks a subrequest's host and port against the policy and returns the
// address to dial: the first resolved address the policy allows. Dialing that address
// rather than the name means the address checked is the address connected to.
func (e *egress) resolveFetch(ctx context.Context, host, port string) (netip.AddrPort, bool, error) {
	byName := e.allowedName(host, port)
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, false, fmt.Errorf("bad port %q", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		ap := netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(p))
		return ap, byName, e.check(ap, byName)
	}
	if strings.Trim(host, "0123456789.") == "" || strings.HasPrefix(strings.ToLower(host), "0x") {
		// 127.1, 2130706433, 0x7f.1: other resolvers read these as IPv4 addresses.
		return netip.AddrPort{}, false, fmt.Errorf("%q is not a canonical IP address: %w", host, ErrRefused)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("resolving %s: %w", host, err)
	}
	var first error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap().WithZone(""), uint16(p))
		err := e.check(ap, byName)
		if err == nil {
			return ap, byName, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%s has no address", host)
	}
	return netip.AddrPort{}, false, fmt.Errorf("%s resolves only to refused addresses: %w", host, first)
}
