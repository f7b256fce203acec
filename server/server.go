// Package server accepts connections and hands each to the right protocol adapter: HTTP/1.1
// (http1), HTTP/2 over TLS by ALPN or h2c with prior knowledge (h2). Every request becomes a
// message.ServerExchange passed to the Handler, usually a *proxy.Proxy.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/fingerprint"
	"github.com/verge-edge/verge/h2"
	"github.com/verge-edge/verge/http1"
	"github.com/verge-edge/verge/message"
)

// Handler serves one exchange. *proxy.Proxy implements it.
type Handler interface {
	ServeExchange(ex message.ServerExchange)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ex message.ServerExchange)

// ServeExchange calls f(ex).
func (f HandlerFunc) ServeExchange(ex message.ServerExchange) { f(ex) }

// Server serves HTTP/1.1 and HTTP/2 on listeners. The zero value with Handler set serves
// plain-text HTTP/1.1 and h2c; set TLSConfig for TLS with ALPN. Fields must not change once
// serving, except through SetHandler.
type Server struct {
	// Handler serves every exchange. Required (or SetHandler before Serve).
	Handler Handler
	// TLSConfig, when non-nil, makes listeners TLS. Its NextProtos are set to "h2" (unless
	// DisableHTTP2) and "http/1.1" when empty.
	TLSConfig *tls.Config
	// HTTP1 configures the HTTP/1.1 codec (limits, timeouts). Its Handler is set by Server.
	HTTP1 http1.Server
	// HTTP2 configures the HTTP/2 adapter (stream limits, windows). Its Handler is set by Server.
	HTTP2 h2.Server
	// DisableHTTP2 serves HTTP/1.1 only: no h2 in ALPN, no h2c prior knowledge.
	DisableHTTP2 bool
	// TLSHandshakeTimeout bounds the TLS handshake and the h2c preface sniff. Zero means 10s.
	TLSHandshakeTimeout time.Duration
	// MaxConns caps concurrent connections per Server; further accepts wait. Zero means no cap.
	MaxConns int
	// AltSvc, when non-empty, is added as an Alt-Svc field to every final response head on
	// HTTP/1.1 and HTTP/2 (unless the response has one), e.g. `h3=":443"; ma=86400` to
	// advertise HTTP/3 (RFC 7838, RFC 9114 section 3.1.1).
	AltSvc string
	// ConnHook, when set, is told when a connection opens (delta +1) and closes (-1), with the
	// protocol it speaks; metrics use it.
	ConnHook func(proto string, delta int)
	// Limits bound connections and requests per client address and new connections per
	// second. The zero value limits nothing.
	Limits ClientLimits
	// ShedHook, when set, is told of every connection or request a limit refused, with the
	// reason (ShedMaxConns, ShedConnsPerClient, ...); metrics use it.
	ShedHook func(reason string)
	// Logger receives accept and handshake errors. Nil means slog.Default().
	Logger *slog.Logger

	handler   atomic.Pointer[Handler]
	initOnce  sync.Once
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]netip.Addr // the client key the guard counted, or the zero Addr
	ctx       context.Context         // canceled when connections must close now
	cancel    context.CancelFunc
	gctx      context.Context // canceled when a graceful shutdown starts
	gcancel   context.CancelFunc
	shutting  atomic.Bool
	wg        sync.WaitGroup
	sem       chan struct{}
	active    atomic.Int64
	guard     *clientGuard // nil: no client limits
	hellos    sync.Map     // net.Conn -> its hello's JA4, from the handshake to serveConn
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server closed")

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[net.Conn]netip.Addr)
		if s.Limits.active() {
			s.guard = newClientGuard(s.Limits)
		}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.gctx, s.gcancel = context.WithCancel(s.ctx)
		if s.MaxConns > 0 {
			s.sem = make(chan struct{}, s.MaxConns)
		}
		if s.Handler != nil && s.handler.Load() == nil {
			h := s.Handler
			s.handler.Store(&h)
		}
		s.HTTP1.Handler = s.serveH1
		s.HTTP1.DrainContext = s.gctx
		s.HTTP2.Handler = s.serveExchange
		if s.TLSConfig != nil {
			cfg := s.TLSConfig.Clone()
			if len(cfg.NextProtos) == 0 {
				if !s.DisableHTTP2 {
					cfg.NextProtos = append(cfg.NextProtos, "h2")
				}
				cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
			}
			// Every hello is fingerprinted on its way to the configured callback.
			inner := cfg.GetConfigForClient
			cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				hello := fingerprint.FromClientHello(h)
				s.hellos.Store(h.Conn, fingerprint.JA4(&hello))
				if inner != nil {
					return inner(h)
				}
				return nil, nil
			}
			s.TLSConfig = cfg
		}
	})
}

// SetHandler replaces the handler for exchanges that start from now on; exchanges in flight
// finish with the handler they started with. Configuration reloads use it.
func (s *Server) SetHandler(h Handler) {
	s.init()
	s.handler.Store(&h)
}

func (s *Server) serveExchange(ex message.ServerExchange) {
	if s.guard != nil {
		t, ok := s.admitRequest(ex)
		if !ok {
			return
		}
		defer s.requestDone(t)
	}
	if s.AltSvc != "" {
		serveAltSvc(*s.handler.Load(), ex, s.AltSvc)
		return
	}
	(*s.handler.Load()).ServeExchange(ex)
}

func (s *Server) serveH1(ex *http1.Exchange) {
	if s.guard != nil {
		t, ok := s.admitRequest(ex)
		if !ok {
			return
		}
		defer s.requestDone(t)
	}
	if s.AltSvc != "" {
		serveAltSvc(*s.handler.Load(), ex, s.AltSvc)
		return
	}
	(*s.handler.Load()).ServeExchange(ex)
}

// ActiveConns reports the number of open connections.
func (s *Server) ActiveConns() int64 { return s.active.Load() }

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.TLSHandshakeTimeout > 0 {
		return s.TLSHandshakeTimeout
	}
	return 10 * time.Second
}

// Serve accepts connections on ln until Shutdown or Close, and returns ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.handler.Load() == nil {
		return errors.New("server: no handler")
	}
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	shedOver := s.sem != nil && s.Limits.ShedOverMaxConns
	for {
		if s.sem != nil && !shedOver {
			select {
			case s.sem <- struct{}{}:
			case <-s.ctx.Done():
				return ErrServerClosed
			}
		}
		c, err := ln.Accept()
		if err != nil {
			if s.sem != nil && !shedOver {
				<-s.sem
			}
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept error; retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if shedOver {
			select {
			case s.sem <- struct{}{}:
			default:
				s.shed(c, ShedMaxConns)
				continue
			}
		}
		if f, ok := (*s.handler.Load()).(ConnFilter); ok && !f.AllowConn(addrPort(c.RemoteAddr()).Addr()) {
			if s.sem != nil {
				<-s.sem
			}
			s.shed(c, ShedIPRules)
			continue
		}
		var client netip.Addr
		if s.guard != nil {
			var reason string
			if client, reason = s.guard.admit(addrPort(c.RemoteAddr()).Addr()); reason != "" {
				if s.sem != nil {
					<-s.sem
				}
				s.shed(c, reason)
				continue
			}
		}
		if !s.track(c, client, true) {
			if s.guard != nil {
				s.guard.release(client)
			}
			c.Close()
			if s.sem != nil {
				<-s.sem
			}
			return ErrServerClosed
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// isTemporary treats accept failures that say so (EMFILE, ENFILE, ECONNABORTED) as transient.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) track(c net.Conn, client netip.Addr, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.shutting.Load() {
			return false
		}
		s.conns[c] = client
		s.active.Add(1)
	} else {
		client = s.conns[c]
		delete(s.conns, c)
		s.active.Add(-1)
		if s.guard != nil {
			s.guard.release(client)
		}
	}
	return true
}

// serveConn runs one connection: TLS handshake or h2c sniff, then the protocol adapter.
// HTTP/1 connections may outlive this goroutine (http1.Server.ServeConnAsync moves an idle
// one to a fresh goroutine with a small stack); endConn then runs on that goroutine.
func (s *Server) serveConn(c net.Conn) {
	async := false
	defer func() {
		if !async {
			s.endConn(c)
		}
	}()

	info := message.ConnInfo{
		RemoteAddr: addrPort(c.RemoteAddr()),
		LocalAddr:  addrPort(c.LocalAddr()),
		Proto:      message.HTTP11,
	}
	conn := c
	h2conn := false
	var sniffed *prefixConn
	if s.TLSConfig != nil {
		tc := tls.Server(c, s.TLSConfig)
		ctx, cancel := context.WithTimeout(s.ctx, s.handshakeTimeout())
		err := tc.HandshakeContext(ctx)
		cancel()
		if fp, ok := s.hellos.LoadAndDelete(c); ok {
			info.JA4 = fp.(string)
		}
		if err != nil {
			s.logger().Debug("tls handshake failed", "remote", c.RemoteAddr(), "err", err)
			return
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol == "acme-tls/1" {
			return // an ACME TLS-ALPN-01 validation: the handshake was all (RFC 8737 section 3)
		}
		info.TLS = &cs
		conn = tc
		h2conn = cs.NegotiatedProtocol == "h2" && !s.DisableHTTP2
	} else if !s.DisableHTTP2 {
		pc := &prefixConn{Conn: c}
		isH2, err := pc.sniffH2C(s.handshakeTimeout())
		if err != nil {
			return
		}
		conn, h2conn, sniffed = pc, isH2, pc
	}
	if h2conn {
		info.Proto = message.HTTP2
	}
	if s.ConnHook != nil {
		s.ConnHook(info.Proto, 1)
	}
	if h2conn {
		s.HTTP2.ServeConn(s.ctx, conn, &info)
		s.connHookDone(info.Proto)
		return
	}
	var prefix []byte
	if sniffed != nil {
		// HTTP/1 gets the TCP connection itself and the sniffed bytes as a prefix, so that
		// its idle wait can use the socket's readiness directly.
		conn, prefix = c, sniffed.buf[sniffed.r:sniffed.w]
	}
	async = true
	s.HTTP1.ServeConnAsync(s.ctx, conn, &info, prefix, func() {
		s.connHookDone(message.HTTP11)
		// http1 closed the connection, unless a handler took it over with Upgrade: then it
		// is the handler's (a WebSocket a worker's Durable Object holds outlives it).
		s.releaseConn(c)
	})
}

// connHookDone reports the end of a connection to ConnHook.
func (s *Server) connHookDone(proto string) {
	if s.ConnHook != nil {
		s.ConnHook(proto, -1)
	}
}

// endConn closes c and releases what Serve took for it.
func (s *Server) endConn(c net.Conn) {
	c.Close()
	s.releaseConn(c)
}

// releaseConn releases what Serve took for c, leaving c open.
func (s *Server) releaseConn(c net.Conn) {
	s.track(c, netip.Addr{}, false)
	if s.sem != nil {
		<-s.sem
	}
	s.wg.Done()
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Shutdown stops accepting and lets open connections finish without losing a request that
// reaches them: HTTP/1.1 responses carry "Connection: close" and idle keep-alive connections
// close after serving a request that arrives within HTTP1.DrainIdleGrace (docs/http1.md,
// Draining); HTTP/2 connections get a two-step GOAWAY and close once their streams are done.
// It waits for that or for ctx to expire, after which it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.gcancel()
	h2done := make(chan struct{})
	go func() { s.HTTP2.Shutdown(ctx); close(h2done) }()
	done := make(chan struct{})
	go func() { s.wg.Wait(); <-h2done; close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once, closing listeners and connections.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.gcancel()
	s.cancel()
	s.closeConns()
	s.wg.Wait()
	return nil
}

func (s *Server) closeConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}
