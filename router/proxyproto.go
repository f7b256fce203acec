package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/verge-edge/verge/acl"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/internal/proxyproto"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// ShedProxyProtocol is the ShedHook reason of connections from a trusted peer closed because
// they did not start with a valid PROXY protocol header in time.
const ShedProxyProtocol = "proxy_protocol"

// maxPendingProxyHeaders bounds the connections from trusted peers one listener holds
// before the server accepts them: those whose PROXY header is being read and those whose
// header is read, waiting for the server's Accept. While that many are held, further
// connections wait in the kernel's accept queue, so when the server stops accepting
// (max_conns reached) the listener stops too, after at most that many.
const maxPendingProxyHeaders = 1024

// proxyListener reads the PROXY protocol header of connections from trusted peers before the
// server accepts them, each on a goroutine of its own, so a slow peer never holds up the
// accept loop; a connection holds its place among the maxPendingProxyHeaders until the
// server has taken it, or has not for the header timeout (then it is closed); the server then sees the client's address as the connection's RemoteAddr and
// everything keyed on it (ip_rules, per-client limits, rate limits, access log,
// X-Forwarded-For) follows. Connections from other peers pass through untouched.
type proxyListener struct {
	inner   net.Listener
	trusted *acl.Set
	timeout time.Duration
	shed    func(reason string) // nil means none
	log     *slog.Logger

	out     chan net.Conn
	closed  chan struct{}
	once    sync.Once
	sem     chan struct{}
	mu      sync.Mutex
	pending map[net.Conn]struct{} // conns whose header is being read, closed by Close
	stopped bool                  // Close has run: pending takes no more, with mu
	done    chan struct{}         // closed when run has returned
	err     error                 // the inner Accept's error that stopped run
}

// newProxyListener wraps inner per cfg and starts accepting from it.
func newProxyListener(inner net.Listener, cfg *config.ProxyProtocol, shed func(string), log *slog.Logger) *proxyListener {
	return newProxyListenerSize(inner, cfg, shed, log, maxPendingProxyHeaders)
}

// newProxyListenerSize is newProxyListener holding at most max connections of trusted peers.
func newProxyListenerSize(inner net.Listener, cfg *config.ProxyProtocol, shed func(string), log *slog.Logger, max int) *proxyListener {
	p := &proxyListener{
		inner:   inner,
		trusted: acl.NewSet(cfg.TrustedPrefixes()),
		timeout: cfg.Timeout.Std(),
		shed:    shed,
		log:     log,
		out:     make(chan net.Conn),
		closed:  make(chan struct{}),
		sem:     make(chan struct{}, max),
		pending: map[net.Conn]struct{}{},
		done:    make(chan struct{}),
	}
	go p.run()
	return p
}

// run accepts from the inner listener until it fails or p is closed.
func (p *proxyListener) run() {
	defer close(p.done)
	for {
		c, err := p.inner.Accept()
		if err != nil {
			p.err = err
			return
		}
		if !p.trusted.Contains(peerAddr(c)) {
			p.deliver(c)
			continue
		}
		select {
		case p.sem <- struct{}{}:
		case <-p.closed:
			c.Close()
			return
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.pending[c] = struct{}{}
		p.mu.Unlock()
		go p.readHeader(c)
	}
}

// readHeader reads c's header and hands over the connection, or closes it. Its place in sem
// is given back only then.
func (p *proxyListener) readHeader(c net.Conn) {
	defer func() { <-p.sem }()
	h, rest, err := proxyproto.Read(c, p.timeout)
	p.mu.Lock()
	delete(p.pending, c)
	p.mu.Unlock()
	if err != nil {
		if p.log.Enabled(context.Background(), slog.LevelDebug) {
			p.log.Debug("PROXY protocol header refused", "peer", c.RemoteAddr().String(), "err", err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		if p.shed != nil {
			p.shed(ShedProxyProtocol)
		}
		return
	}
	if h.Local && len(rest) == 0 {
		p.deliverWithin(c) // the balancer's own connection (a health check): its addresses stand
		return
	}
	pc := &proxiedConn{Conn: c, prefix: rest, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if !h.Local {
		pc.remote, pc.local = net.TCPAddrFromAddrPort(h.Src), net.TCPAddrFromAddrPort(h.Dst)
	}
	p.deliverWithin(pc)
}

// deliverWithin hands c to Accept, or closes it when p is closed first or nobody accepts it
// within the header timeout (the server is at its max_conns).
func (p *proxyListener) deliverWithin(c net.Conn) {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case p.out <- c:
	case <-p.closed:
		c.Close()
	case <-t.C:
		c.Close()
		if p.shed != nil {
			p.shed(server.ShedMaxConns) // the server takes no more: it is at max_conns
		}
	}
}

// deliver hands c to Accept, or closes it when p is closed first.
func (p *proxyListener) deliver(c net.Conn) {
	select {
	case p.out <- c:
	case <-p.closed:
		c.Close()
	}
}

// Accept returns the next connection, its header read.
func (p *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.out:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	case <-p.done:
		select {
		case c := <-p.out:
			return c, nil
		default:
		}
		return nil, p.err
	}
}

// Close closes the inner listener and the connections whose header is still being read.
func (p *proxyListener) Close() error {
	p.once.Do(func() {
		close(p.closed)
		p.inner.Close()
		p.mu.Lock()
		p.stopped = true
		for c := range p.pending {
			c.Close()
		}
		p.mu.Unlock()
	})
	return nil
}

// Addr is the inner listener's address.
func (p *proxyListener) Addr() net.Addr { return p.inner.Addr() }

func peerAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// proxiedConn is a connection whose PROXY header was read: its addresses are the header's,
// and the bytes read past the header come first.
type proxiedConn struct {
	net.Conn
	prefix        []byte
	remote, local net.Addr
}

func (c *proxiedConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

// SetLinger sets the socket's linger, so that a shed connection behind a PROXY header is
// reset like any other (server.Server's shed).
func (c *proxiedConn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return errors.ErrUnsupported
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
func (c *proxiedConn) LocalAddr() net.Addr  { return c.local }

var errPrefixPending = errors.New("router: bytes after the PROXY header not read yet")

// SyscallConn gives the socket to the HTTP/1 codec's idle wait once the bytes read past the
// header are consumed (before that, readiness of the socket would not say they are there).
func (c *proxiedConn) SyscallConn() (syscall.RawConn, error) {
	if len(c.prefix) > 0 {
		return nil, errPrefixPending
	}
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// proxyProtocol wraps the listener of l in a proxyListener when l reads PROXY headers.
func (rt *Runtime) proxyProtocol(l *config.Listener, ln net.Listener) net.Listener {
	if l.ProxyProtocol == nil {
		return ln
	}
	var shed func(string)
	if h := rt.opts.ShedHook; h != nil {
		name := l.Name
		shed = func(reason string) { h(name, reason) }
	}
	return newProxyListener(ln, l.ProxyProtocol, shed, rt.log)
}

// proxyProtocolKey is the part of a listener's serverKey that its proxy_protocol sets: a
// change gives the listener a new server (and proxyListener) on the same socket.
func proxyProtocolKey(p *config.ProxyProtocol) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%+v", *p)
}

// withClient returns peer with the addresses of the request's client connection for the
// PROXY header its group sends (a copy per request), or peer itself when it sends none.
func withClient(s *proxy.Session, peer *upstream.Peer) *upstream.Peer {
	if peer.ProxyProtocol == 0 {
		return peer
	}
	p := *peer
	ci := s.Conn()
	p.ProxySource = netip.AddrPortFrom(ci.RemoteAddr.Addr().Unmap(), ci.RemoteAddr.Port())
	p.ProxyDest = netip.AddrPortFrom(ci.LocalAddr.Addr().Unmap(), ci.LocalAddr.Port())
	return &p
}
