package http1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Server defaults.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	// DefaultDrainIdleGrace is how long a draining server waits on a keep-alive connection
	// for a request the client may already have sent (see Server.DrainIdleGrace).
	DefaultDrainIdleGrace = time.Second
	// maxDrain is how much of a request body the server reads and discards after a handler
	// that did not read it, to keep the connection; with more left it closes instead.
	maxDrain = 256 << 10
	// lingerTimeout bounds how long the server reads and discards client bytes after sending
	// an error response, so that the response is not lost to a TCP reset.
	lingerTimeout = 500 * time.Millisecond
)

// Server serves HTTP/1.x on connections handed to it by a listener. The zero value plus a
// Handler is ready to use. A Server's fields must not change while it serves.
type Server struct {
	// Limits bound the request heads and bodies accepted; zero fields take their defaults.
	Limits
	// Handler is called for each request, one at a time per connection, and must write the
	// response (WriteHeader, Write, Finish) before returning. The Exchange and the strings of
	// its Request are valid only until the handler returns.
	Handler func(ex *Exchange)
	// Scheme is set as Request.Scheme. Empty means "https" on a TLS connection (a *tls.Conn,
	// or a ConnInfo with TLS state) and "http" otherwise.
	Scheme string
	// ReadHeaderTimeout bounds reading a request head from its first byte. Zero means
	// DefaultReadHeaderTimeout (10s); negative means no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive connection. Zero means
	// DefaultIdleTimeout (60s); negative means no limit.
	IdleTimeout time.Duration
	// BodyReadTimeout bounds each read of the request body. Zero means
	// DefaultBodyReadTimeout (60s); negative means no limit.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds each write to the client. Zero means DefaultWriteTimeout (60s);
	// negative means no limit.
	WriteTimeout time.Duration
	// Logger receives debug records about rejected requests and broken connections. Nil
	// means slog.Default().
	Logger *slog.Logger
	// OnReject, when set, is called for every request the server answers itself because it
	// cannot be parsed or breaks a limit (400, 408, 414, 417, 431, 501, 505), after the error
	// response was written, so that access logs and metrics count requests the Handler never
	// sees. It runs on the connection's goroutine; the Reject is valid only during the call.
	OnReject func(Reject)
	// DrainContext, when done, starts a graceful stop (see docs/http1.md, Draining): a
	// response that has not started yet is sent with "Connection: close", and a keep-alive
	// connection waits up to DrainIdleGrace for one more request, which it answers with
	// "Connection: close", before it closes. Nil means the ctx given to ServeConn, and then
	// idle connections close at once, since their exchanges' Context is done as well. Keeping
	// the two apart lets exchanges (whose Context is ServeConn's ctx) finish their upstream
	// requests while the server drains.
	DrainContext context.Context
	// DrainIdleGrace is how long, once DrainContext is done, a keep-alive connection with no
	// request in progress waits for one before it closes: a client may have sent its next
	// request before it could learn of the stop, and closing under it would lose that
	// request. It counts from the start of the drain for connections that were idle then, and
	// from the end of the response for connections that were busy. Zero means
	// DefaultDrainIdleGrace (1s); negative means idle connections close at once.
	DrainIdleGrace time.Duration

	// holdIdleBuffer keeps the read buffer across keep-alive waits (benchmarks only).
	holdIdleBuffer bool
	// drains holds the connections to wake when DrainContext is done.
	drains drainList
}

// serverConfig is a Server with its defaults applied, resolved once per connection.
type serverConfig struct {
	lim                               Limits
	readHeader, idle, bodyRead, write time.Duration
	log                               *slog.Logger
	handler                           func(*Exchange)
	onReject                          func(Reject)
	scheme                            string
	holdIdleBuffer                    bool
}

func timeoutOr(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

func (s *Server) config(c net.Conn, info *message.ConnInfo) serverConfig {
	cfg := serverConfig{
		lim:        s.Limits.withDefaults(),
		readHeader: timeoutOr(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		idle:       timeoutOr(s.IdleTimeout, DefaultIdleTimeout),
		bodyRead:   timeoutOr(s.BodyReadTimeout, DefaultBodyReadTimeout),
		write:      timeoutOr(s.WriteTimeout, DefaultWriteTimeout),
		log:        s.logger(),
		handler:    s.Handler,
		onReject:   s.OnReject,
		scheme:     s.Scheme,
		// holdIdleBuffer is only set by benchmarks, to measure what releasing costs.
		holdIdleBuffer: s.holdIdleBuffer,
	}
	if cfg.scheme == "" {
		cfg.scheme = "http"
		if _, ok := c.(*tls.Conn); ok || info.TLS != nil {
			cfg.scheme = "https"
		}
	}
	return cfg
}

// logger returns the Logger, or slog.Default() when none is set.
func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Connection states seen by the shutdown callback. A connection is idle while it waits for
// a request (hibernating included); stateWaking is set by onShutdown while it moves an idle
// connection's deadline, so that the connection, which waits for it to finish before it
// becomes active (serverConn.activate), never has its deadline moved while it serves.
const (
	stateActive int32 = iota
	stateIdle
	stateWaking
)

// serverConn is the working state of one downstream connection: buffers, exchange, resolved
// config. It is pooled with its Exchange, and given back while the connection hibernates.
type serverConn struct {
	cfg  serverConfig
	ctx  context.Context
	conn net.Conn
	info *message.ConnInfo
	in   inbuf
	out  outbuf
	ex   Exchange
	idle [1]byte
	// readyFn is ready, the callback of waitIdle's wait on life.raw.
	readyFn    func(fd uintptr) bool
	readyCalls int
	idleErr    error // end of file or error met by ready
	// life is the part of the connection's state that outlives a hibernation.
	life *connLife
	// hibernate is set by waitIdle when the connection should continue on a fresh goroutine.
	hibernate bool
	// parkHibernate says the current idle wait may end in hibernation; parkUntil is its idle
	// deadline (zero: none). Both are set by armPark.
	parkHibernate bool
	parkUntil     time.Time
	// drainUntil is when a draining connection's idle wait gives up (mono; zero: not yet
	// known, see drainDeadline).
	drainUntil int64
}

var serverConnPool = sync.Pool{New: func() any {
	sc := new(serverConn)
	sc.ex.c = sc
	sc.readyFn = sc.ready
	return sc
}}

// ServeConn serves HTTP/1.x requests on c until the client closes it, an error or a limit
// ends it, or ctx is done. Requests are handled one at a time: pipelined requests are read
// only after the previous response is finished, so their responses go out in order. ServeConn
// closes c when it returns, unless a handler took the connection over with Upgrade. When ctx is
// done, an idle connection is closed at once and a busy one after its current response.
//
// info describes the connection; nil means one derived from c's addresses.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, info *message.ConnInfo) {
	s.ServeConnWithPrefix(ctx, c, info, nil)
}

// ServeConnWithPrefix is ServeConn for a connection whose first bytes were already read from
// c (for example to tell an HTTP/2 prior-knowledge preface from HTTP/1): prefix holds them and
// is parsed before anything read from c. prefix is copied; the caller may reuse it.
func (s *Server) ServeConnWithPrefix(ctx context.Context, c net.Conn, info *message.ConnInfo, prefix []byte) {
	s.start(ctx, c, info, prefix, nil).run(false)
}

// ServeConnAsync is ServeConnWithPrefix for a caller that lets the connection outlive the call:
// a keep-alive connection idle for longer than 250ms hibernates (see docs/http1.md) and ServeConnAsync
// returns, so that the deep stack grown by its requests is freed while it waits. done must not
// be nil; it is called exactly once, on whichever goroutine serves the connection last, after
// the connection was closed (or taken over by Upgrade). Connections whose raw socket is not
// reachable (TLS) never move and done is called before ServeConnAsync returns.
func (s *Server) ServeConnAsync(ctx context.Context, c net.Conn, info *message.ConnInfo, prefix []byte, done func()) {
	s.start(ctx, c, info, prefix, done).run(false)
}

func connInfo(c net.Conn) *message.ConnInfo {
	info := &message.ConnInfo{Proto: message.HTTP11}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		info.RemoteAddr = a.AddrPort()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		info.LocalAddr = a.AddrPort()
	}
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		info.TLS = &st
	}
	info.RemoteAddr = netip.AddrPortFrom(info.RemoteAddr.Addr().Unmap(), info.RemoteAddr.Port())
	return info
}

// serve runs the connection's request loop until the connection must close or hibernate.
// waited means the connection was seen readable already (a resumed hibernation).
func (sc *serverConn) serve(waited bool) {
	for {
		if !sc.readRequest(waited) {
			return
		}
		waited = false
		sc.runHandler()
		if !sc.endExchange() {
			return
		}
	}
}

// ErrAbortHandler, when a handler panics with it, aborts the exchange without logging a stack:
// the connection is closed (or a 500 sent when no response head was written yet).
var ErrAbortHandler = errors.New("http1: abort handler")

// runHandler calls the handler and contains a panic in it: the panic is logged with its stack
// and the connection closes after endExchange answered 500 (no head written yet) or aborted
// the response, so one faulty request cannot take the server down.
func (sc *serverConn) runHandler() {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		sc.ex.closeAfter = true
		if p == ErrAbortHandler {
			return
		}
		buf := make([]byte, 16<<10)
		buf = buf[:runtime.Stack(buf, false)]
		sc.cfg.log.LogAttrs(sc.ctx, slog.LevelError, "http1: handler panic",
			slog.String("remote", sc.info.RemoteAddr.String()), slog.String("method", sc.ex.req.Method),
			slog.String("target", sc.ex.req.Target), slog.Any("panic", p), slog.String("stack", string(buf)))
	}()
	sc.cfg.handler(&sc.ex)
}

// waitIdle waits for the first byte of the next request without holding a buffer. It
// reports whether a request is there to be read; false means the connection must close or,
// with sc.hibernate set, hibernate.
//
// While the server drains, the wait lasts until the connection's drain deadline
// (drainDeadline) instead of the idle timeout, and never hibernates: whatever arrives until
// then is served, with "Connection: close".
func (sc *serverConn) waitIdle() bool {
	l := sc.life
	// With a done callback, wait only hibernateAfter on this goroutine.
	sc.parkHibernate = l.done != nil && l.raw != nil && (sc.cfg.idle == 0 || sc.cfg.idle > 2*hibernateAfter)
	sc.drainUntil = 0
	if l.shutdown.Load() {
		if l.grace <= 0 {
			return false
		}
		// The response just sent may not have said "Connection: close" (its head went out
		// before the drain began): the client may be sending its next request now.
		sc.drainUntil = mono() + int64(l.grace)
	}
	if l.raw == nil {
		sc.armPark()
	}
	l.state.Store(stateIdle)
	if l.shutdown.Load() {
		// A drain that began before the state said idle did not move the deadline.
		if l.grace <= 0 {
			sc.activate()
			return false
		}
		sc.armDrain()
	}
	if l.raw == nil {
		return sc.waitIdleRead()
	}
	for {
		// Read what is there, or wait for readability holding no buffer; the wait's
		// deadline is set only when it waits (see ready).
		sc.readyCalls, sc.idleErr = 0, nil
		err := l.raw.Read(sc.readyFn)
		if err == nil {
			err = sc.idleErr
		}
		switch {
		case sc.in.w > sc.in.r, err == nil:
			// Bytes arrived (or a read was interrupted, which the head parser retries).
			sc.activate()
			sc.in.acquire()
			return true
		case !errors.Is(err, os.ErrDeadlineExceeded):
			sc.activate()
			if !errors.Is(err, io.EOF) {
				sc.debug("waiting for a request", err)
			}
			return false
		case l.shutdown.Load():
			if l.grace <= 0 {
				sc.activate()
				return false
			}
			if mono() < sc.drainDeadline() {
				// Woken early (by the drain moving the deadline, or by a deadline set
				// before the drain): wait on until the drain deadline.
				sc.armDrain()
				continue
			}
			sc.activate()
			// The deadline and a request may have come together: look once more.
			return sc.lastLook()
		case sc.readyCalls == 0:
			// A deadline left by the last request ran out before the wait began.
			sc.armPark()
		case sc.parkHibernate && sc.idleErr == nil:
			// Still idle: give this goroutine up (run hands the connection on). The state
			// stays idle, so a drain meanwhile still finds the connection.
			sc.hibernate, l.idleUntil = true, sc.parkUntil
			return false
		default:
			sc.activate()
			return false // idle timeout
		}
	}
}

// waitIdleRead is waitIdle for a connection whose socket is not reachable (TLS, or no raw
// idle wait on this platform): it waits with a one-byte read.
func (sc *serverConn) waitIdleRead() bool {
	l := sc.life
	for {
		n, err := sc.conn.Read(sc.idle[:])
		if n > 0 {
			sc.activate()
			sc.in.acquire()
			sc.in.buf[0] = sc.idle[0]
			sc.in.r, sc.in.w = 0, 1
			return true
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && l.shutdown.Load() && l.grace > 0 && mono() < sc.drainDeadline() {
			sc.armDrain()
			continue
		}
		sc.activate()
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
			sc.debug("read failed", err)
		}
		return false
	}
}

// activate ends an idle wait (see stateWaking). When the server drains, the read deadline
// may have been moved by onShutdown, so the lazily kept per-read deadline is set again.
func (sc *serverConn) activate() {
	l := sc.life
	for !l.state.CompareAndSwap(stateIdle, stateActive) {
		runtime.Gosched() // onShutdown is moving the deadline
	}
	if l.shutdown.Load() {
		sc.in.rdl.forget()
	}
}

// drainDeadline returns when the current idle wait of a draining connection ends: a grace
// from the end of the last response when that came after the drain began, else the grace
// from the start of the drain.
func (sc *serverConn) drainDeadline() int64 {
	if sc.drainUntil == 0 {
		sc.drainUntil = sc.life.drainBy
	}
	return sc.drainUntil
}

// armDrain sets the read deadline of a draining connection's idle wait: the drain deadline,
// or one already past when the server has no grace for idle connections.
func (sc *serverConn) armDrain() {
	sc.parkHibernate = false
	d := time.Unix(1, 0)
	if sc.life.grace > 0 {
		d = epoch.Add(time.Duration(sc.drainDeadline()))
	}
	sc.conn.SetReadDeadline(d)
	sc.in.rdl.forget()
}

// armPark sets the deadline of an idle wait: the idle timeout, or hibernateAfter when the
// connection may hibernate (parkUntil keeps the idle deadline for later); the drain's
// (armDrain) once the server drains.
func (sc *serverConn) armPark() {
	now := time.Now()
	sc.parkUntil = time.Time{}
	if sc.cfg.idle > 0 {
		sc.parkUntil = now.Add(sc.cfg.idle)
	}
	if sc.parkHibernate {
		sc.conn.SetReadDeadline(now.Add(hibernateAfter))
	} else {
		sc.conn.SetReadDeadline(sc.parkUntil)
	}
	sc.in.rdl.forget()
	// Checked after the deadline is set: a drain that began before may have had its own
	// deadline overridden by it.
	if sc.life.shutdown.Load() {
		sc.armDrain()
	}
}

// waitIdleBuffered is waitIdle for a connection that keeps its buffer while idle.
func (sc *serverConn) waitIdleBuffered() bool {
	if sc.cfg.idle > 0 {
		sc.conn.SetReadDeadline(time.Now().Add(sc.cfg.idle))
	} else {
		sc.conn.SetReadDeadline(time.Time{})
	}
	sc.life.state.Store(stateIdle)
	if sc.life.shutdown.Load() {
		sc.activate()
		return false
	}
	err := sc.in.fill()
	sc.activate()
	return err == nil
}

// readRequest reads and parses the next request head and prepares the Exchange. It reports
// false when the connection must close (after sending an error response when one is due).
// waited means waitIdle already saw the connection readable.
func (sc *serverConn) readRequest(waited bool) bool {
	in := &sc.in
	in.perRead = 0
	if in.r == in.w && !waited {
		if sc.cfg.holdIdleBuffer {
			if !sc.waitIdleBuffered() {
				return false
			}
		} else if !sc.waitIdle() {
			return false
		}
	}
	lim := &sc.cfg.lim
	var scan headScanner
	n := 0
	headDeadline := false
	for {
		var perr *protoError
		n, perr = scan.scan(in.buf[in.r:in.w], lim.MaxRequestLine, lim.MaxHeaderBytes, lim.MaxHeaders)
		if perr != nil {
			sc.reject(perr)
			return false
		}
		if n > 0 {
			break
		}
		if !headDeadline {
			// The head is not all here: bound the wait for the rest. A head that arrived
			// whole (the usual case) needs no deadline of its own.
			headDeadline = true
			if sc.cfg.readHeader > 0 {
				sc.conn.SetReadDeadline(time.Now().Add(sc.cfg.readHeader))
			} else {
				sc.conn.SetReadDeadline(time.Time{})
			}
			in.rdl.forget()
		}
		if err := in.fill(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !sc.life.shutdown.Load() {
				sc.reject(errHeadTimeout)
			} else if !errors.Is(err, io.EOF) {
				sc.debug("reading request head", err)
			}
			return false
		}
	}
	head := in.buf[in.r+scan.skip : in.r+n]
	in.r += n
	in.keep = in.r
	ex := &sc.ex
	ex.reset()
	if perr := parseRequestHead(head, &ex.req, &ex.rh, lim); perr != nil {
		sc.reject(perr)
		return false
	}
	ex.req.Scheme = sc.cfg.scheme
	// Body reads arm their own deadline (a negative perRead clears whatever the idle wait or
	// the head left).
	in.perRead = sc.cfg.bodyRead
	if in.perRead == 0 {
		in.perRead = -1
	}
	switch {
	case ex.rh.chunked:
		ex.body.init(in, bodyChunked, -1, lim, &ex.req.Trailer, fault.Downstream)
		ex.req.Body = (*requestBody)(ex)
	case ex.req.ContentLength > 0:
		ex.body.init(in, bodyLength, ex.req.ContentLength, lim, &ex.req.Trailer, fault.Downstream)
		ex.req.Body = (*requestBody)(ex)
	default:
		ex.body.init(in, bodyNone, 0, lim, nil, fault.Downstream)
	}
	return true
}

var errHeadTimeout = newProtoError(408, "timeout reading request head")

// endExchange finishes what the handler left and reports whether the connection can serve
// another request.
func (sc *serverConn) endExchange() bool {
	ex := &sc.ex
	if ex.upgraded {
		return false
	}
	if !ex.finished && !ex.aborted {
		switch {
		case !ex.headWritten:
			ex.closeAfter = true
			sc.writeSimple(500, true)
			sc.out.flush()
		case ex.respMode == bodyLength && ex.respRemaining == 0, ex.respMode == bodyNone:
			ex.Finish(nil)
		default:
			sc.debug("handler returned before finishing the response", nil)
			ex.Abort(nil)
		}
	}
	sc.out.release()
	if ex.aborted || ex.closeAfter || sc.out.err != nil {
		if ex.closeAfter && !ex.aborted && sc.out.err == nil && sc.life.shutdown.Load() {
			// The drain's "Connection: close" went out: let the client read it before
			// the close, even if it sent more meanwhile.
			sc.lingerClose()
		}
		return false
	}
	if sc.life.shutdown.Load() && sc.life.grace <= 0 {
		return false
	}
	if !ex.body.done {
		if ex.rh.expect100 && !ex.continueSent {
			return false // the client may be waiting to send the body
		}
		if !ex.body.drain(maxDrain) {
			return false
		}
	}
	ex.req.Reset()
	if sc.cfg.holdIdleBuffer && sc.in.r == sc.in.w {
		sc.in.r, sc.in.w, sc.in.keep = 0, 0, 0
	} else {
		sc.in.reset()
	}
	return true
}

// Reject describes a request the server refused before it reached the Handler.
type Reject struct {
	// Status is the status sent, e.g. 431.
	Status int
	// Reason is the short reason sent in the response body, e.g. "request head too large".
	Reason string
	// Err is the parse error; its text is "http1: " and the reason.
	Err error
	// BodyBytes is the length of the response body sent; 0 when the response could not be
	// written.
	BodyBytes int64
	// Conn describes the client connection.
	Conn *message.ConnInfo
	// Time is when the response was sent.
	Time time.Time
}

// reject answers a request that cannot be served with a short plain-text response naming the
// reason and closes the connection after letting the client read it (RFC 9112 section 9.6).
func (sc *serverConn) reject(perr *protoError) {
	if sc.cfg.log.Enabled(sc.ctx, slog.LevelDebug) {
		sc.cfg.log.LogAttrs(sc.ctx, slog.LevelDebug, "http1: rejecting request",
			slog.Int("status", perr.status), slog.String("reason", perr.msg),
			slog.String("remote", sc.info.RemoteAddr.String()))
	}
	n := sc.writeReject(perr)
	err := sc.out.flush()
	if err != nil {
		n = 0
	}
	if f := sc.cfg.onReject; f != nil {
		f(Reject{Status: perr.status, Reason: perr.msg, Err: perr, BodyBytes: int64(n), Conn: sc.info, Time: time.Now()})
	}
	if err != nil {
		return
	}
	sc.lingerClose()
}

// writeReject writes the error response for perr: "431 Request Header Fields Too Large:
// request head too large" and a newline, as text/plain, with Connection: close. It returns
// the length of the body.
func (sc *serverConn) writeReject(perr *protoError) int {
	w := &sc.out
	text := message.StatusText(perr.status)
	n := 3 + 1 + len(text) + 2 + len(perr.msg) + 1
	w.writeString("HTTP/1.1 ")
	w.writeInt(int64(perr.status), false)
	w.writeByte(' ')
	w.writeString(text)
	w.writeString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	w.writeInt(int64(n), false)
	w.writeString("\r\nConnection: close\r\n\r\n")
	w.writeInt(int64(perr.status), false)
	w.writeByte(' ')
	w.writeString(text)
	w.writeString(": ")
	w.writeString(perr.msg)
	w.writeByte('\n')
	return n
}

// writeSimple writes a response with no body.
func (sc *serverConn) writeSimple(status int, close bool) {
	w := &sc.out
	w.writeString("HTTP/1.1 ")
	w.writeInt(int64(status), false)
	w.writeByte(' ')
	w.writeString(message.StatusText(status))
	w.writeString("\r\nContent-Length: 0\r\n")
	if close {
		w.writeString("Connection: close\r\n")
	}
	w.writeString("\r\n")
}

type closeWriter interface{ CloseWrite() error }

// lingerClose half-closes the connection and discards what the client still sends for a short
// while, so that closing with unread bytes does not reset the connection before the client has
// read the response.
func (sc *serverConn) lingerClose() {
	cw, ok := sc.conn.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	sc.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	var scratch [512]byte
	for range 128 {
		if _, err := sc.conn.Read(scratch[:]); err != nil {
			return
		}
	}
}

func (sc *serverConn) debug(msg string, err error) {
	if !sc.cfg.log.Enabled(sc.ctx, slog.LevelDebug) {
		return
	}
	sc.cfg.log.LogAttrs(sc.ctx, slog.LevelDebug, "http1: "+msg,
		slog.Any("error", err), slog.String("remote", sc.info.RemoteAddr.String()))
}
