package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/message"
)

// Server defaults, applied by [Server] to fields left at zero.
const (
	// DefaultIdleTimeout closes a connection after 30s without network activity (QUIC's
	// max_idle_timeout, RFC 9000 section 10.1; the smaller of both sides' values applies).
	DefaultIdleTimeout = 30 * time.Second
	// DefaultHandshakeTimeout bounds a QUIC handshake, 10s; a handshake that receives nothing
	// for half of it is dropped earlier.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxStreams is the number of request streams a client may have open at once on
	// one connection, as the HTTP/2 adapter's default.
	DefaultMaxStreams = 128
	// DefaultInitialStreamWindow is a stream's initial receive window: how much request body
	// a client may send before the handler reads it, 256 KiB.
	DefaultInitialStreamWindow = 256 << 10
	// DefaultMaxStreamWindow is how far a stream's receive window may grow by auto-tuning,
	// 2 MiB.
	DefaultMaxStreamWindow = 2 << 20
	// DefaultInitialConnWindow is the connection's initial receive window, 1 MiB.
	DefaultInitialConnWindow = 1 << 20
	// DefaultMaxConnWindow is how far the connection's receive window may grow, 8 MiB.
	DefaultMaxConnWindow = 8 << 20
	// DefaultMaxHeaderBytes bounds a request's HEADERS frame, 64 KiB.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHandshakes caps QUIC handshakes in flight per Server; further connection
	// attempts are refused (CONNECTION_REFUSED) until some complete.
	DefaultMaxHandshakes = 1024
	// DefaultSendTimeout is how long one write of a response may block (the client grants
	// no flow-control credit) before the stream is reset, 60s (NGINX's send_timeout).
	DefaultSendTimeout = 60 * time.Second
	// DefaultBodyReadTimeout is how long one read of a request body may wait for the next
	// bytes before the stream is cancelled, 60s (NGINX's client_body_timeout).
	DefaultBodyReadTimeout = 60 * time.Second
)

// Server serves HTTP/3 on a [Socket], presenting each request stream as a
// [message.ServerExchange]. The zero value with TLSConfig and Handler set serves with the
// documented defaults. Fields must not change after Serve was called, except through
// SetHandler.
type Server struct {
	// Handler serves one exchange on its own goroutine and must end it with Finish or Abort
	// before it returns; a stream whose handler returned without either, or panicked, is
	// reset (H3_INTERNAL_ERROR). A nil Handler answers every request with 404.
	Handler func(ex message.ServerExchange)
	// TLSConfig holds the certificates. Required. Its NextProtos are replaced by "h3"; a
	// GetConfigForClient hook is honoured (and its result gets "h3" too). TLS 1.3 is implied.
	TLSConfig *tls.Config

	// IdleTimeout closes a connection after this long without network activity. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds a handshake. Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxStreams is the number of concurrent request streams per connection, which also
	// bounds the handler goroutines per connection. Zero means DefaultMaxStreams.
	MaxStreams int
	// InitialStreamWindow and MaxStreamWindow are a stream's initial and largest receive
	// window; InitialConnWindow and MaxConnWindow the connection's. Zero means
	// DefaultInitialStreamWindow, DefaultMaxStreamWindow, DefaultInitialConnWindow and
	// DefaultMaxConnWindow; a maximum below its initial value is raised to it.
	InitialStreamWindow, MaxStreamWindow, InitialConnWindow, MaxConnWindow uint64
	// MaxHeaderBytes bounds a request's HEADERS frame; larger requests get 431. Zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxBodySize bounds a request body in bytes. A request whose content-length is larger is
	// answered 413 without reaching Handler; a body that grows past it fails the handler's
	// body read with a RequestTooLarge fault after exactly MaxBodySize bytes. Zero or
	// negative means no limit.
	MaxBodySize int64
	// SendTimeout bounds how long one write of a response may block because the client
	// grants no flow-control credit; the write then fails with a downstream WriteTimeout
	// fault and the stream is reset, so a proxy releases its upstream connection. Zero means
	// DefaultSendTimeout; negative means no limit.
	SendTimeout time.Duration
	// BodyReadTimeout bounds how long one read of a request body may wait for the client's
	// next bytes (or the end of the body), as NGINX's client_body_timeout does. On expiry the
	// read fails with a downstream ReadTimeout fault and reading is cancelled with
	// H3_REQUEST_CANCELLED (STOP_SENDING): a handler that sent nothing yet may answer (a
	// proxy sends 408); otherwise the stream is reset with H3_REQUEST_CANCELLED when the
	// handler returns. Zero means DefaultBodyReadTimeout; negative means no limit (long-lived
	// gRPC client streams may want that, or a larger value).
	BodyReadTimeout time.Duration
	// InitialPacketSize is the size of the first packets sent and the floor of the packet
	// size, between 1200 and 1452 bytes (quic-go's largest UDP payload). Path MTU discovery
	// grows packets from there up to 1452 bytes unless DisablePathMTUDiscovery is set. Zero
	// means 1280 bytes.
	InitialPacketSize uint16
	// DisablePathMTUDiscovery keeps packets at InitialPacketSize.
	DisablePathMTUDiscovery bool
	// MaxHandshakes caps handshakes in flight; connection attempts beyond it are refused.
	// Zero means DefaultMaxHandshakes.
	MaxHandshakes int
	// RetryThreshold is the number of handshakes in flight from which new connection
	// attempts must first prove their address with a Retry round trip. Zero means a quarter of
	// MaxHandshakes (at least 1); negative means always.
	RetryThreshold int
	// Allow0RTT accepts 0-RTT early data from resuming clients. Requests that arrived before
	// the handshake completed carry "Early-Data: 1" (RFC 8470 section 5.1); those with a
	// non-idempotent method are answered 425 Too Early without reaching Handler. Off by
	// default.
	Allow0RTT bool
	// QlogDir, when non-empty, writes one qlog file per connection (<odcid>_server.sqlog)
	// into that directory, for debugging. Empty means the VERGE_QLOG_DIR environment
	// variable, and no qlog when that is empty too.
	QlogDir string

	// ConnHook, when set, is told when a connection completes its handshake (delta +1, proto
	// message.HTTP3) and when it closes (-1).
	ConnHook func(proto string, delta int)
	// HandshakeHook, when set, is told the outcome of every handshake attempt that got past
	// address validation: "ok", "failed" (timeout, TLS error, peer gave up) or "refused" (the
	// MaxHandshakes cap).
	HandshakeHook func(result string)
	// Logger receives handler panics at Error and connection errors at Debug. Nil means
	// slog.Default().
	Logger *slog.Logger

	handler atomic.Pointer[func(message.ServerExchange)]
	once    sync.Once
	st      *serverState
}

// serverState is what Serve builds once from the Server's fields.
type serverState struct {
	srv        *Server
	tls        *tls.Config
	quic       *quic.Config
	h3         *http3.Server
	logger     *slog.Logger
	maxHS      int64
	retryAt    int64
	maxBody    int64         // 0: none
	sendTO     time.Duration // 0: none
	readTO     time.Duration // 0: none
	handshakes atomic.Int64  // in flight
	hsMu       sync.Mutex
	hsIdle     chan struct{} // closed when handshakes drops to zero; nil until awaited

	mu       sync.Mutex
	ln       listener
	conns    map[*quic.Conn]struct{}
	shutdown bool
	wg       sync.WaitGroup // connection goroutines
}

// listener is what quic-go's Listener and EarlyListener have in common.
type listener interface {
	Accept(ctx context.Context) (*quic.Conn, error)
	Close() error
}

// ErrServerClosed is returned by Serve after Shutdown or Close, or once another Server took
// over the Socket.
var ErrServerClosed = errors.New("h3: server closed")

// SetHandler replaces the handler for exchanges that start from now on; configuration reloads
// use it.
func (s *Server) SetHandler(h func(message.ServerExchange)) { s.handler.Store(&h) }

func (s *Server) config() *serverState {
	s.once.Do(func() { s.st = newServerState(s) })
	return s.st
}

// newServerState applies the defaults of every field in one place.
func newServerState(s *Server) *serverState {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if s.handler.Load() == nil {
		h := s.Handler
		s.handler.Store(&h)
	}
	hs := orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
	q := &quic.Config{
		HandshakeIdleTimeout:           hs / 2,
		MaxIdleTimeout:                 orDefault(s.IdleTimeout, DefaultIdleTimeout),
		MaxIncomingStreams:             int64(orDefault(s.MaxStreams, DefaultMaxStreams)),
		InitialStreamReceiveWindow:     orDefault(s.InitialStreamWindow, DefaultInitialStreamWindow),
		MaxStreamReceiveWindow:         orDefault(s.MaxStreamWindow, DefaultMaxStreamWindow),
		InitialConnectionReceiveWindow: orDefault(s.InitialConnWindow, DefaultInitialConnWindow),
		MaxConnectionReceiveWindow:     orDefault(s.MaxConnWindow, DefaultMaxConnWindow),
		InitialPacketSize:              s.InitialPacketSize,
		DisablePathMTUDiscovery:        s.DisablePathMTUDiscovery,
		Allow0RTT:                      s.Allow0RTT,
	}
	q.MaxStreamReceiveWindow = max(q.MaxStreamReceiveWindow, q.InitialStreamReceiveWindow)
	q.MaxConnectionReceiveWindow = max(q.MaxConnectionReceiveWindow, q.InitialConnectionReceiveWindow)
	dir := s.QlogDir
	if dir == "" {
		dir = os.Getenv("VERGE_QLOG_DIR")
	}
	if dir != "" {
		q.Tracer = qlogTracer(dir, logger)
	}
	st := &serverState{
		srv:     s,
		quic:    q,
		logger:  logger,
		maxHS:   int64(orDefault(s.MaxHandshakes, DefaultMaxHandshakes)),
		conns:   make(map[*quic.Conn]struct{}),
		maxBody: max(s.MaxBodySize, 0),
	}
	switch {
	case s.SendTimeout == 0:
		st.sendTO = DefaultSendTimeout
	case s.SendTimeout > 0:
		st.sendTO = s.SendTimeout
	}
	switch {
	case s.BodyReadTimeout == 0:
		st.readTO = DefaultBodyReadTimeout
	case s.BodyReadTimeout > 0:
		st.readTO = s.BodyReadTimeout
	}
	switch {
	case s.RetryThreshold < 0:
		st.retryAt = 0
	case s.RetryThreshold == 0:
		st.retryAt = max(st.maxHS/4, 1)
	default:
		st.retryAt = int64(s.RetryThreshold)
	}
	if s.TLSConfig != nil {
		st.tls = http3.ConfigureTLSConfig(s.TLSConfig)
		st.tls.MinVersion = tls.VersionTLS13
	}
	st.h3 = &http3.Server{
		Handler:        &streamHandler{st: st},
		MaxHeaderBytes: orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ConnContext:    st.connContext,
		Logger:         logger,
	}
	return st
}

func orDefault[T int | uint64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Serve accepts QUIC connections on sock until Shutdown or Close, or until another Server is
// attached to sock, and returns ErrServerClosed then. The Server becomes sock's current one:
// a Server that was serving on sock stops accepting (its connections go on).
func (s *Server) Serve(sock *Socket) error {
	st := s.config()
	if st.tls == nil {
		return errors.New("h3: server has no TLSConfig")
	}
	st.mu.Lock()
	if st.shutdown {
		st.mu.Unlock()
		return ErrServerClosed
	}
	ln, err := sock.attach(st)
	if err != nil {
		st.mu.Unlock()
		return err
	}
	st.ln = ln
	st.mu.Unlock()
	// quic-go refuses a connection whose handshake completed while its accept queue (32
	// connections) is full, so several acceptors wait in Accept at once: each takes a
	// connection straight from the handshake, does no more than start its goroutine, and
	// together they widen the queue in proportion to the handshake cap.
	n := acceptors(st.maxHS)
	errs := make(chan error, n)
	for range n {
		go func() { errs <- st.acceptLoop(ln) }()
	}
	err = <-errs
	ln.Close()
	for range n - 1 {
		<-errs
	}
	if errors.Is(err, quic.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// acceptors is the number of goroutines that accept connections for a handshake cap of maxHS:
// half the cap, at most 512 (parked goroutines cost a few KiB each). With one sixteenth
// (64 for the default cap), 52 of a burst of 300 connections were refused once on a loaded
// 2-core machine: acceptors woken with a connection were not run again before another 96
// handshakes completed.
func acceptors(maxHS int64) int { return int(min(max(maxHS/2, 4), 512)) }

// acceptLoop accepts connections until the listener closes, handing each to a goroutine of
// its own.
func (st *serverState) acceptLoop(ln listener) error {
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return err
		}
		if !st.track(conn) {
			conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
			continue
		}
		go st.serveConn(conn)
	}
}

// AwaitHandshakes returns once no handshake is in flight, or when ctx ends. During a binary
// upgrade the old process calls it after the hand-over started and before StopAccepting:
// from then on no new connection attempt reaches it (the new process reads the socket), and
// the attempts it had already begun complete and are served instead of being refused.
func (s *Server) AwaitHandshakes(ctx context.Context) error {
	st := s.config()
	for {
		st.hsMu.Lock()
		if st.hsIdle == nil {
			st.hsIdle = make(chan struct{})
		}
		ch := st.hsIdle
		st.hsMu.Unlock()
		if st.handshakes.Load() <= 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handshakeEnded releases a handshake slot and wakes AwaitHandshakes at zero.
func (st *serverState) handshakeEnded() {
	if st.handshakes.Add(-1) > 0 {
		return
	}
	st.hsMu.Lock()
	if st.hsIdle != nil {
		close(st.hsIdle)
		st.hsIdle = nil
	}
	st.hsMu.Unlock()
}

// StopAccepting stops accepting new QUIC connections (handshakes in flight are refused) while
// the connections already accepted go on. A binary upgrade calls it so new connections go to
// the new process; Shutdown later drains the rest.
func (s *Server) StopAccepting() { s.config().stopAccepting() }

// stopAccepting closes the server's QUIC listener: handshakes in flight are refused, accepted
// connections are not touched.
func (st *serverState) stopAccepting() {
	st.mu.Lock()
	ln := st.ln
	st.ln = nil
	st.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

func (st *serverState) track(c *quic.Conn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.shutdown {
		return false
	}
	st.conns[c] = struct{}{}
	st.wg.Add(1)
	return true
}

// serveConn runs one connection's HTTP/3 session until it ends.
func (st *serverState) serveConn(c *quic.Conn) {
	defer st.wg.Done()
	defer func() {
		st.mu.Lock()
		delete(st.conns, c)
		st.mu.Unlock()
	}()
	if hs, ok := c.Context().Value(handshakeKey{}).(*handshake); ok {
		select {
		case <-c.HandshakeComplete():
			hs.done(true)
		default:
			// Accepted before the handshake completed (0-RTT): settle it when it does.
			go hs.await(c)
		}
	}
	if h := st.srv.ConnHook; h != nil {
		h(message.HTTP3, 1)
		defer h(message.HTTP3, -1)
	}
	if err := st.h3.ServeQUICConn(c); err != nil && !errors.Is(err, http.ErrServerClosed) {
		st.logger.Debug("h3: connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
	c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

// Shutdown stops the server gracefully: it stops accepting connections, sends GOAWAY on every
// connection, lets requests in flight finish and returns once every connection closed. When
// ctx ends first the remaining connections are closed at once and ctx's error is returned.
// The Socket stays open (close it separately).
func (s *Server) Shutdown(ctx context.Context) error {
	st := s.config()
	st.mu.Lock()
	st.shutdown = true
	st.mu.Unlock()
	st.stopAccepting()
	err := st.h3.Shutdown(ctx)
	done := make(chan struct{})
	go func() { st.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		st.closeConns()
		<-done
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Close stops the server at once, closing every connection.
func (s *Server) Close() error {
	st := s.config()
	st.mu.Lock()
	st.shutdown = true
	st.mu.Unlock()
	st.stopAccepting()
	st.closeConns()
	err := st.h3.Close()
	st.wg.Wait()
	return err
}

func (st *serverState) closeConns() {
	st.mu.Lock()
	for c := range st.conns {
		c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "server closed")
	}
	st.mu.Unlock()
}

// ActiveConns reports the number of connections being served.
func (s *Server) ActiveConns() int {
	st := s.config()
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.conns)
}

// connData is what every request of one connection shares, found through the request context.
type connData struct {
	conn   *quic.Conn
	info   message.ConnInfo
	resets resetBudget // streams the client canceled before their response
}

type connDataKey struct{}

// connContext is http3.Server's ConnContext: it attaches the connection's description.
func (st *serverState) connContext(ctx context.Context, c *quic.Conn) context.Context {
	d := &connData{conn: c}
	d.info.Proto = message.HTTP3
	d.info.RemoteAddr = addrPort(c.RemoteAddr())
	d.info.LocalAddr = addrPort(c.LocalAddr())
	cs := c.ConnectionState().TLS
	d.info.TLS = &cs
	return context.WithValue(ctx, connDataKey{}, d)
}

func addrPort(a net.Addr) (ap netip.AddrPort) {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.AddrPort()
	}
	if a != nil {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return ap
}
