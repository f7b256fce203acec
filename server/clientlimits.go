package server

import (
	"math"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/verge-edge/verge/limits"
	"github.com/verge-edge/verge/message"
)

// ClientLimits bound what one client address, and all clients together, may open on a
// Server. The client address is the connection's peer (not an address from X-Forwarded-For:
// these limits act before any request is read), cut to IPv4Prefix or IPv6Prefix bits. The
// zero value limits nothing.
type ClientLimits struct {
	// MaxConnsPerClient caps a client's concurrent connections. Zero means no cap.
	MaxConnsPerClient int
	// ConnRatePerClient caps a client's new connections per second (bursts of the same
	// number). Zero means no cap.
	ConnRatePerClient int
	// AcceptRate caps new connections per second, all clients together (bursts of the same
	// number). Zero means no cap.
	AcceptRate int
	// MaxRequestsPerClient caps a client's concurrent requests over all its connections
	// (HTTP/1.1 requests and HTTP/2 streams); a request beyond it is answered 429 with
	// Retry-After: 1. Zero means no cap.
	MaxRequestsPerClient int
	// MaxBodyBytesPerClient caps the request body bytes a client may have in flight: the
	// sum of the declared lengths (Content-Length) of its concurrent requests, a body of
	// unknown length (chunked, or an HTTP/2 stream without content-length) counting as
	// UnknownBodyBytes. A request that would pass it is answered 429 with Retry-After: 1
	// before its body is read. Zero means no cap.
	MaxBodyBytesPerClient int64
	// UnknownBodyBytes is what a body of unknown length counts for MaxBodyBytesPerClient.
	// Zero means 1 MiB.
	UnknownBodyBytes int64
	// IPv4Prefix and IPv6Prefix are the bits of the peer address that name a client. Zero
	// means 32 and 64.
	IPv4Prefix, IPv6Prefix int
	// ShedOverMaxConns sheds new connections beyond Server.MaxConns instead of leaving them
	// to wait in the kernel's backlog.
	ShedOverMaxConns bool
	// Respond answers a shed plain-text connection with a 503 and Retry-After: 1 before
	// closing it (best effort: a client still sending may see a reset instead). False, and
	// TLS listeners, close it at once, the cheapest answer.
	Respond bool
	// ShedForOverload, when set, is asked about each new connection of a client already
	// holding held connections: true sheds it (reason ShedOverload). Adaptive protection
	// sets it to shed the busiest clients first while the process is overloaded.
	ShedForOverload func(held int) bool
	// Exempt lists peers the per-client caps do not apply to (trusted proxies, health
	// checkers). AcceptRate and MaxConns still count them.
	Exempt []netip.Prefix
}

// Shed reasons given to Server.ShedHook.
const (
	ShedMaxConns        = "max_conns"
	ShedConnsPerClient  = "conns_per_client"
	ShedConnRate        = "conn_rate_per_client"
	ShedAcceptRate      = "accept_rate"
	ShedRequestsPerClnt = "requests_per_client"
	ShedOverload        = "overload"
	ShedBodyBytes       = "body_bytes_per_client"
)

func (l *ClientLimits) active() bool {
	return l.MaxConnsPerClient > 0 || l.ConnRatePerClient > 0 || l.AcceptRate > 0 || l.MaxRequestsPerClient > 0 || l.ShedOverMaxConns ||
		l.MaxBodyBytesPerClient > 0 ||
		l.ShedForOverload != nil
}

// clientGuard applies ClientLimits. Counts live in shards of maps holding only the addresses
// with connections (or requests) open, so memory follows what is open, which MaxConns and
// the per-client caps bound.
type clientGuard struct {
	lim    ClientLimits
	conns  clientCounts
	reqs   clientCounts
	bytes  clientSums
	rate   *limits.TokenBucket // per client
	accept *limits.TokenBucket // global
}

func newClientGuard(l ClientLimits) *clientGuard {
	if l.IPv4Prefix <= 0 || l.IPv4Prefix > 32 {
		l.IPv4Prefix = 32
	}
	if l.IPv6Prefix <= 0 || l.IPv6Prefix > 128 {
		l.IPv6Prefix = 64
	}
	g := &clientGuard{lim: l}
	g.conns.init()
	g.reqs.init()
	g.bytes.init()
	if g.lim.UnknownBodyBytes <= 0 {
		g.lim.UnknownBodyBytes = 1 << 20
	}
	if l.ConnRatePerClient > 0 {
		g.rate = limits.NewTokenBucket(int64(l.ConnRatePerClient), time.Second, int64(l.ConnRatePerClient), limits.Sizing{Keys: 65536})
	}
	if l.AcceptRate > 0 {
		g.accept = limits.NewTokenBucket(int64(l.AcceptRate), time.Second, int64(l.AcceptRate), limits.Sizing{Keys: 1})
	}
	return g
}

// client returns the client key of a peer address, and whether the per-client caps apply.
func (g *clientGuard) client(a netip.Addr) (netip.Addr, bool) {
	if !a.IsValid() {
		return a, false // not an IP peer (a Unix socket): no per-client caps
	}
	a = a.Unmap()
	for _, p := range g.lim.Exempt {
		if p.Contains(a) {
			return a, false
		}
	}
	bits := g.lim.IPv6Prefix
	if a.Is4() {
		bits = g.lim.IPv4Prefix
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a, true
	}
	return p.Addr(), true
}

// admit decides on a new connection from peer: "" admits it (and counts it; release must
// follow), otherwise the shed reason.
func (g *clientGuard) admit(peer netip.Addr) (netip.Addr, string) {
	now := limits.Now()
	if g.accept != nil && !g.accept.Allow(nil, now).Allowed {
		return netip.Addr{}, ShedAcceptRate
	}
	c, capped := g.client(peer)
	if !capped {
		return netip.Addr{}, ""
	}
	if g.rate != nil {
		b := c.As16()
		if !g.rate.Allow(b[:], now).Allowed {
			return netip.Addr{}, ShedConnRate
		}
	}
	if g.lim.MaxConnsPerClient > 0 || g.lim.ShedForOverload != nil {
		max := g.lim.MaxConnsPerClient
		if max <= 0 {
			max = math.MaxInt32
		}
		held, ok := g.conns.acquire(c, max, g.lim.ShedForOverload)
		switch {
		case ok:
			return c, ""
		case held < max:
			return netip.Addr{}, ShedOverload
		}
		return netip.Addr{}, ShedConnsPerClient
	}
	return netip.Addr{}, ""
}

// release forgets a connection admit counted (c is what admit returned; the zero Addr
// when nothing was counted).
func (g *clientGuard) release(c netip.Addr) {
	if c.IsValid() {
		g.conns.release(c)
	}
}

// perClient holds a number per client address, in 64 shards under their own locks.
type perClient[V int32 | int64] struct {
	shards [64]clientShard[V]
}

type clientShard[V int32 | int64] struct {
	mu sync.Mutex
	m  map[netip.Addr]V
}

func (p *perClient[V]) init() {
	for i := range p.shards {
		p.shards[i].m = map[netip.Addr]V{}
	}
}

func (p *perClient[V]) shard(a netip.Addr) *clientShard[V] {
	b := a.As16()
	return &p.shards[(b[15]^b[14]^b[3])&63]
}

// clientCounts counts open things per client address.
type clientCounts struct{ perClient[int32] }

// acquire counts one more for a unless a holds max already or shed (when set) refuses it
// given what a holds; it returns what a held before.
func (cc *clientCounts) acquire(a netip.Addr, max int, shed func(held int) bool) (int, bool) {
	s := cc.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int(s.m[a])
	if n >= max || shed != nil && shed(n) {
		return n, false
	}
	s.m[a] = int32(n + 1)
	return n, true
}

func (cc *clientCounts) release(a netip.Addr) {
	s := cc.shard(a)
	s.mu.Lock()
	if n := s.m[a] - 1; n > 0 {
		s.m[a] = n
	} else {
		delete(s.m, a)
	}
	s.mu.Unlock()
}

// shedResponse is what Respond sends on a shed plain-text connection.
var shedResponse = func() []byte {
	body := "503 Service Unavailable: too many connections\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// ConnFilter is implemented by a Handler that decides which peers may connect at all (IP
// rules). A refused connection is closed at once, counted as ShedIPRules.
type ConnFilter interface {
	AllowConn(peer netip.Addr) bool
}

// ShedIPRules is the ShedHook reason of connections a ConnFilter refused.
const ShedIPRules = "ip_rules"

// shed closes a connection refused by a limit, first answering 503 when configured and the
// listener is plain text.
func (s *Server) shed(c net.Conn, reason string) {
	if s.Limits.Respond && s.TLSConfig == nil && reason != ShedIPRules {
		c.SetWriteDeadline(time.Now().Add(time.Millisecond))
		c.Write(shedResponse)
	} else if tc, ok := c.(interface{ SetLinger(sec int) error }); ok { // *net.TCPConn or a wrapper
		tc.SetLinger(0) // a reset: no TIME_WAIT left behind for a flood's connections
	}
	c.Close()
	if s.ShedHook != nil {
		s.ShedHook(reason)
	}
}

var tooManyRequests = []byte("429 Too Many Requests: too many concurrent requests (or request bytes) from this client\n")

var tooManyHeader = func() message.Header {
	var h message.Header
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Retry-After", "1")
	h.Add("Cache-Control", "no-store")
	return h
}()

// clientSums sums int64 amounts per client address.
type clientSums struct{ perClient[int64] }

// add adds n for a unless that passes max (a single amount above max passes alone when a
// has nothing in flight, so that one large body is limited by max_body, not refused here).
func (cs *clientSums) add(a netip.Addr, n, max int64) bool {
	s := cs.shard(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.m[a]
	if cur > 0 && cur+n > max {
		return false
	}
	s.m[a] = cur + n
	return true
}

func (cs *clientSums) sub(a netip.Addr, n int64) {
	s := cs.shard(a)
	s.mu.Lock()
	if v := s.m[a] - n; v > 0 {
		s.m[a] = v
	} else {
		delete(s.m, a)
	}
	s.mu.Unlock()
}

// reqTicket is what admitRequest counted for a request, released by requestDone.
type reqTicket struct {
	client netip.Addr // zero: nothing counted
	req    bool       // counted in reqs
	bytes  int64      // counted in bytes
}

// bodyBytes is what a request's body counts for MaxBodyBytesPerClient.
func (g *clientGuard) bodyBytes(r *message.Request) int64 {
	switch {
	case r.ContentLength > 0:
		return r.ContentLength
	case r.ContentLength < 0 || r.Body != nil && r.ContentLength != 0:
		return g.lim.UnknownBodyBytes
	}
	return 0
}

// admitRequest counts a request of ex's client against MaxRequestsPerClient and
// MaxBodyBytesPerClient; it answers 429 itself and returns false when the client is over
// one. requestDone must be called with the ticket when true.
func (s *Server) admitRequest(ex message.ServerExchange) (reqTicket, bool) {
	g := s.guard
	if g == nil || g.lim.MaxRequestsPerClient <= 0 && g.lim.MaxBodyBytesPerClient <= 0 {
		return reqTicket{}, true
	}
	c, capped := g.client(ex.Conn().RemoteAddr.Addr())
	if !capped {
		return reqTicket{}, true
	}
	t := reqTicket{client: c}
	reason := ""
	if g.lim.MaxRequestsPerClient > 0 {
		if _, ok := g.reqs.acquire(c, g.lim.MaxRequestsPerClient, nil); ok {
			t.req = true
		} else {
			reason = ShedRequestsPerClnt
		}
	}
	if reason == "" && g.lim.MaxBodyBytesPerClient > 0 {
		if n := g.bodyBytes(ex.Request()); n > 0 {
			if g.bytes.add(c, n, g.lim.MaxBodyBytesPerClient) {
				t.bytes = n
			} else {
				reason = ShedBodyBytes
			}
		}
	}
	if reason == "" {
		return t, true
	}
	s.requestDone(t)
	resp := message.Response{Status: 429, Proto: ex.Request().Proto, ContentLength: int64(len(tooManyRequests))}
	resp.Header.CopyFrom(&tooManyHeader)
	if reason == ShedBodyBytes && ex.Conn().Proto == message.HTTP11 {
		// The body was not read: the connection can't be reused for the next request.
		resp.Header.Add("Connection", "close")
	}
	if ex.WriteHeader(&resp) == nil {
		if ex.Request().Method != "HEAD" {
			ex.Write(tooManyRequests)
		}
		ex.Finish(nil)
	}
	if s.ShedHook != nil {
		s.ShedHook(reason)
	}
	return reqTicket{}, false
}

// requestDone releases what admitRequest counted.
func (s *Server) requestDone(t reqTicket) {
	if !t.client.IsValid() {
		return
	}
	if t.req {
		s.guard.reqs.release(t.client)
	}
	if t.bytes > 0 {
		s.guard.bytes.sub(t.client, t.bytes)
	}
}
