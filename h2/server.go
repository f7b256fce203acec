package h2

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/verge-edge/verge/message"
)

// Server defaults, applied by [Server] to fields left at zero.
const (
	// DefaultMaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS advertised to
	// clients, as NGINX does (HAProxy uses 100).
	DefaultMaxConcurrentStreams = 128
	// DefaultMaxHeaderListSize is the SETTINGS_MAX_HEADER_LIST_SIZE advertised to clients:
	// the decoded size of a request's header list (RFC 9113 section 6.5.2), 64 KiB.
	DefaultMaxHeaderListSize = 64 << 10
	// DefaultMaxReadFrameSize is the largest frame payload a client may send, 16 KiB (the
	// protocol's initial value), which bounds the per-connection read buffer.
	DefaultMaxReadFrameSize = 16 << 10
	// DefaultMaxUploadBufferPerStream is the initial flow-control window of a stream, 256 KiB.
	DefaultMaxUploadBufferPerStream = 256 << 10
	// DefaultMaxUploadBufferPerConnection is the flow-control window of a connection, 1 MiB.
	DefaultMaxUploadBufferPerConnection = 1 << 20
	// DefaultIdleTimeout is how long a connection without open streams is kept, 60s.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultReadIdleTimeout is how long the server waits without reading a frame before it
	// sends a PING to check the client is alive, 30s.
	DefaultReadIdleTimeout = 30 * time.Second
	// DefaultPingTimeout is how long the server waits for a PING acknowledgement before it
	// closes the connection, 15s.
	DefaultPingTimeout = 15 * time.Second
	// DefaultWriteByteTimeout is how long a write may make no progress (the client stopped
	// reading) before the connection is closed, 30s.
	DefaultWriteByteTimeout = 30 * time.Second
	// DefaultSendTimeout is how long a response may wait for flow-control window before its
	// stream is reset, 60s (NGINX's send_timeout).
	DefaultSendTimeout = 60 * time.Second
	// DefaultBodyReadTimeout is how long a read of a request body may wait for the next
	// bytes before its stream is reset, 60s (NGINX's client_body_timeout).
	DefaultBodyReadTimeout = 60 * time.Second
)

// Server serves HTTP/2 connections, presenting each stream as a [message.ServerExchange].
// The zero value serves with the documented defaults once Handler is set. Fields must not be
// changed after the first call to ServeConn.
type Server struct {
	// Handler serves one exchange. It runs on a goroutine of its own per stream (taken from
	// a pool of reused goroutines) and must end the exchange with Finish or Abort before it
	// returns; a Handler that returns without either, or panics, has its stream reset
	// (RST_STREAM INTERNAL_ERROR) rather than leave the client with a response that looks
	// complete. END_STREAM is sent by Finish; the stream's handler slot (see
	// MaxConcurrentStreams) is freed when Handler returns, so it should return promptly
	// after Finish. A nil Handler answers every request with 404.
	Handler func(ex message.ServerExchange)

	// MaxConcurrentStreams is the number of streams a client may have open at once, which
	// also bounds the handler goroutines per connection. Zero means
	// DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds the decoded header list of a request (names, values and 32
	// bytes per field). Larger requests get 431; a client that keeps sending header blocks
	// far past it has its connection closed. Zero means DefaultMaxHeaderListSize; values
	// below 1 KiB are raised to 1 KiB.
	MaxHeaderListSize uint32
	// MaxReadFrameSize is the largest frame payload accepted, between 16 KiB and 16 MiB.
	// Zero or out of range means DefaultMaxReadFrameSize.
	MaxReadFrameSize uint32
	// MaxUploadBufferPerStream is the flow-control window of each stream: how much request
	// body a client may send before the handler reads it. Zero or negative means
	// DefaultMaxUploadBufferPerStream.
	MaxUploadBufferPerStream int32
	// MaxUploadBufferPerConnection is the connection's flow-control window, at least 65535.
	// Zero or smaller values mean DefaultMaxUploadBufferPerConnection.
	MaxUploadBufferPerConnection int32
	// IdleTimeout closes a connection with GOAWAY after this long without open streams.
	// PINGs are not activity. Zero means DefaultIdleTimeout; negative means no limit.
	IdleTimeout time.Duration
	// ReadIdleTimeout sends a PING after this long without receiving a frame, to find dead
	// connections. Zero means DefaultReadIdleTimeout; negative disables the check.
	ReadIdleTimeout time.Duration
	// PingTimeout closes the connection when a PING sent after ReadIdleTimeout is not
	// acknowledged within it. Zero or negative means DefaultPingTimeout.
	PingTimeout time.Duration
	// WriteByteTimeout closes the connection when pending data makes no progress for this
	// long. Zero means DefaultWriteByteTimeout; negative means no limit.
	WriteByteTimeout time.Duration
	// SendTimeout bounds how long a response may wait for flow-control window the client
	// does not grant (SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE, for instance). A
	// stream that waited this long without sending a byte is reset with RST_STREAM CANCEL and
	// its handler's blocked Write fails with a downstream WriteTimeout fault, so a proxy
	// releases its upstream connection; when it is the connection's window that stayed
	// closed, the connection is closed with GOAWAY ENHANCE_YOUR_CALM. Zero means
	// DefaultSendTimeout; negative means no limit.
	SendTimeout time.Duration
	// BodyReadTimeout bounds each wait of the handler's Read of a request body for the next
	// bytes (or the end of the stream), as NGINX's client_body_timeout does: a client that
	// trickles or stops sending a body would otherwise hold the stream, the handler and a
	// proxy's upstream connection. On expiry the stream is reset with RST_STREAM CANCEL and
	// the blocked Read fails with a downstream ReadTimeout fault. Zero means
	// DefaultBodyReadTimeout; negative means no limit (long-lived gRPC client streams may
	// want that, or a larger value).
	BodyReadTimeout time.Duration
	// MaxBodySize bounds a request body in bytes. A request whose content-length is
	// larger is answered 413 without reaching Handler; a body that grows past it while
	// streaming fails the handler's body read with a RequestTooLarge fault after exactly
	// MaxBodySize bytes, and the rest is discarded. Zero or negative means no limit.
	MaxBodySize int64

	// CountError, when non-nil, is called for each protocol error the server detects, with
	// a word-character name of the form scope_CODE_reason, such as
	// "conn_ENHANCE_YOUR_CALM_too_many_early_resets" (a rapid-reset flood) or
	// "stream_PROTOCOL_ERROR_over_max_streams", for counting in metrics. It must be safe for
	// concurrent use and fast.
	CountError func(errType string)
	// Logger receives the server's messages: handler panics at Error, aborted and
	// unfinished streams at Debug. Nil means slog.Default().
	Logger *slog.Logger

	// floodLimit overrides the flood score limit (flood.go) in tests; zero means floodLimit.
	floodLimit int64

	once  sync.Once
	state *serverState
}

// serverState is what ServeConn builds once from the Server's fields.
type serverState struct {
	srv           *Server
	logger        *slog.Logger
	pool          workerPool
	maxStreams    uint32
	maxHeaderList uint32
	maxBlock      int // encoded header block bytes after which the connection is closed
	maxFrame      uint32
	streamWindow  int32
	connWindow    int32
	idleTimeout   time.Duration // 0: none
	readIdle      time.Duration // 0: no keep-alive PING
	pingTimeout   time.Duration
	writeTimeout  time.Duration // 0: none
	sendTimeout   time.Duration // 0: none
	bodyRead      time.Duration // 0: none
	maxBody       int64         // 0: none
	floodLimit    int64

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutdown bool
	drained  chan struct{} // closed when shutdown and conns is empty
}

// config returns s's state, applying the defaults on first use.
func (s *Server) config() *serverState {
	s.once.Do(func() { s.state = newServerState(s) })
	return s.state
}

// newServerState applies the defaults of every field in one place.
func newServerState(s *Server) *serverState {
	st := &serverState{
		srv:          s,
		logger:       s.Logger,
		maxStreams:   orDefault(s.MaxConcurrentStreams, DefaultMaxConcurrentStreams),
		maxFrame:     s.MaxReadFrameSize,
		streamWindow: s.MaxUploadBufferPerStream,
		connWindow:   s.MaxUploadBufferPerConnection,
		idleTimeout:  duration(s.IdleTimeout, DefaultIdleTimeout),
		readIdle:     duration(s.ReadIdleTimeout, DefaultReadIdleTimeout),
		pingTimeout:  s.PingTimeout,
		writeTimeout: duration(s.WriteByteTimeout, DefaultWriteByteTimeout),
		sendTimeout:  duration(s.SendTimeout, DefaultSendTimeout),
		bodyRead:     duration(s.BodyReadTimeout, DefaultBodyReadTimeout),
		maxBody:      max(s.MaxBodySize, 0),
		floodLimit:   s.floodLimit,
		conns:        make(map[*serverConn]struct{}),
	}
	if st.logger == nil {
		st.logger = slog.Default()
	}
	if st.maxFrame < minMaxFrameSize || st.maxFrame > 16<<20 {
		st.maxFrame = DefaultMaxReadFrameSize
	}
	if st.streamWindow <= 0 {
		st.streamWindow = DefaultMaxUploadBufferPerStream
	}
	if st.connWindow < initialWindow {
		st.connWindow = DefaultMaxUploadBufferPerConnection
	}
	if st.floodLimit <= 0 {
		st.floodLimit = floodLimit
	}
	if st.pingTimeout <= 0 {
		st.pingTimeout = DefaultPingTimeout
	}
	st.maxHeaderList = max(orDefault(s.MaxHeaderListSize, DefaultMaxHeaderListSize), 1<<10)
	// An encoded block is rarely larger than its decoded list; twice the limit plus a
	// frame's worth lets every list up to the limit (and a 431 for larger ones) through.
	st.maxBlock = 2*int(st.maxHeaderList) + int(st.maxFrame)
	return st
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}

// duration maps zero to def and negative to 0, "no limit".
func duration(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// ServeConn serves HTTP/2 on c until the connection ends, then closes c. c is either a TLS
// connection that negotiated "h2" by ALPN or a plain-text connection whose first bytes are the
// client preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (h2c with prior knowledge; a conn that
// replays peeked bytes is fine). info describes the connection to handlers; nil means one is
// derived from c. Canceling ctx closes c at once; use Shutdown for a graceful stop. The
// handlers' request contexts derive from ctx.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, info *message.ConnInfo) {
	st := s.config()
	if info == nil {
		info = connInfo(c)
	}
	sc := newServerConn(st, ctx, c, info)
	if !st.track(sc) {
		c.Close()
		return
	}
	defer st.untrack(sc)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	sc.serve()
}

// Shutdown stops the server gracefully: every connection gets a GOAWAY in two steps (see
// drain.go: streams the client sent before it saw the first one are still served), streams in
// flight run to completion, and Shutdown returns once all connections have closed. When ctx
// ends first, the remaining connections are closed at once and ctx's error is returned.
// Connections handed to ServeConn after Shutdown started are closed immediately.
func (s *Server) Shutdown(ctx context.Context) error {
	st := s.config()
	st.mu.Lock()
	if !st.shutdown {
		st.shutdown = true
		st.drained = make(chan struct{})
		if len(st.conns) == 0 {
			close(st.drained)
		}
	}
	drained := st.drained
	for sc := range st.conns {
		sc.mu.Lock()
		sc.startDrainLocked()
		sc.mu.Unlock()
	}
	st.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		st.mu.Lock()
		for sc := range st.conns {
			sc.c.Close()
		}
		st.mu.Unlock()
		return ctx.Err()
	}
}

func (st *serverState) track(c *serverConn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.shutdown {
		return false
	}
	st.conns[c] = struct{}{}
	return true
}

func (st *serverState) untrack(c *serverConn) {
	st.mu.Lock()
	delete(st.conns, c)
	if st.shutdown && len(st.conns) == 0 {
		select {
		case <-st.drained:
		default:
			close(st.drained)
		}
	}
	st.mu.Unlock()
}

// connInfo describes c when ServeConn's caller passed no ConnInfo.
func connInfo(c net.Conn) *message.ConnInfo {
	info := &message.ConnInfo{Proto: message.HTTP2}
	info.RemoteAddr = addrPort(c.RemoteAddr())
	info.LocalAddr = addrPort(c.LocalAddr())
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := tc.ConnectionState()
		info.TLS = &cs
	}
	return info
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
