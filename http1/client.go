package http1

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Client defaults.
const (
	// DefaultClientMaxHeaderBytes bounds a response head (and a response trailer section).
	DefaultClientMaxHeaderBytes = 64 << 10
	// DefaultClientMaxHeaders bounds the fields of a response head (and of its trailers).
	DefaultClientMaxHeaders = 100
	// DefaultContinueTimeout bounds the wait for 100 Continue before the body is sent anyway.
	DefaultContinueTimeout = time.Second
	// maxInterim bounds the 1xx responses skipped before a final response.
	maxInterim = 16
)

// ClientOptions configure a ClientConn. The zero value is usable.
type ClientOptions struct {
	// MaxHeaderBytes bounds the response head and the trailer section. Zero means
	// DefaultClientMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int
	// MaxHeaders bounds the number of response header (and trailer) fields. Zero means
	// DefaultClientMaxHeaders (100).
	MaxHeaders int
	// MaxChunkExtension bounds the chunk extensions of one chunk-size line of a chunked
	// response. Zero means DefaultMaxChunkExtension (1 KiB).
	MaxChunkExtension int
	// ReadTimeout bounds each read from the connection: the wait for the response head, then
	// each read of the body. Zero or negative means no limit.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of the request. Zero or negative means no limit.
	WriteTimeout time.Duration
	// ContinueTimeout bounds the wait for 100 Continue when the request carries
	// "Expect: 100-continue"; the body is sent when it expires. Zero means
	// DefaultContinueTimeout (1s).
	ContinueTimeout time.Duration
	// Release, when non-nil, is called exactly once per RoundTrip when the exchange is over:
	// when the response body is closed, or when RoundTrip fails. reusable is true only when the
	// connection is clean for another request. It is called after the ClientConn is ready for
	// that request, so it may hand the connection to another goroutine.
	Release func(cc *ClientConn, reusable bool)
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultClientMaxHeaderBytes
	}
	if o.MaxHeaders <= 0 {
		o.MaxHeaders = DefaultClientMaxHeaders
	}
	if o.MaxChunkExtension <= 0 {
		o.MaxChunkExtension = DefaultMaxChunkExtension
	}
	if o.ReadTimeout < 0 {
		o.ReadTimeout = 0
	}
	if o.WriteTimeout < 0 {
		o.WriteTimeout = 0
	}
	if o.ContinueTimeout <= 0 {
		o.ContinueTimeout = DefaultContinueTimeout
	}
	return o
}

// Client connection states.
const (
	ccIdle int32 = iota
	ccBusy
	ccUpgraded
	ccClosed
)

// ClientConn is an HTTP/1.1 connection to an upstream server carrying one request at a time.
// It holds no buffer while idle.
type ClientConn struct {
	conn     net.Conn
	opts     ClientOptions
	lim      Limits
	in       inbuf
	out      outbuf
	state    atomic.Int32
	requests int

	// Per round trip.
	resp      message.Response
	rh        respHead
	body      clientBody
	upgraded  clientUpgraded
	keepAlive bool
	released  bool
	reused    bool
	canceled  atomic.Bool
	ctx       context.Context

	// The context watch outlives a round trip: a proxy passes the same context (its
	// downstream server's) for many requests on one upstream connection, and registering a
	// context.AfterFunc per request would allocate each time. watched is the context the
	// registration stop undoes; a late firing while idle is undone at the next RoundTrip.
	watchMu sync.Mutex
	watched context.Context
	stop    func() bool

	// sa is the state of sendAwait's callback, saFn that callback.
	sa   sendAwaitState
	saFn func(fd uintptr) bool
	// idleSince is mono() when the connection last went idle.
	idleSince int64
}

// freshIdle is how long an idle connection is trusted not to have been closed by the origin
// in a way only a read would show (see sendAwait).
const freshIdle = int64(time.Second)

// opError wraps an errno from a system call made on the raw socket the way net.Conn reports
// its own I/O errors, so that both paths classify alike.
func (cc *ClientConn) opError(op string, errno error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: cc.conn.LocalAddr(), Addr: cc.conn.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}

// sendAwaitState is what the callback of one sendAwait did.
type sendAwaitState struct {
	calls int
	wrote int   // bytes of the request written
	werr  error // the write's errno, when it stopped short
}

// sendAwait sends the buffered request, one without a body, and waits for the first bytes of
// the response. Where the connection's socket is reachable it writes from inside the wait
// (rawSendAwait): the poller then reports the response's arrival and the read that finds
// nothing yet, which a write followed by a read costs, is saved. Errors of the wait itself (a
// deadline, a cancellation) are left in the read buffer for readHead to report.
func (cc *ClientConn) sendAwait() error {
	out, in := &cc.out, &cc.in
	// A connection idle for a while may hold an end of file the origin sent meanwhile; the
	// poller reported it before this wait, so only the plain read after a plain write finds it
	// at once (a write from the wait relies on the origin resetting the connection).
	if in.raw == nil || out.err != nil || len(out.buf) == 0 || in.buffered() > 0 || in.err != nil ||
		cc.canceled.Load() || (cc.requests > 1 && mono()-cc.idleSince > freshIdle) {
		return out.flush()
	}
	in.armRead()
	if cc.saFn == nil {
		cc.saFn = cc.rawSendAwait
	}
	cc.sa = sendAwaitState{}
	err := in.raw.Read(cc.saFn)
	if cc.sa.wrote < len(out.buf) {
		if cc.sa.werr != nil && cc.sa.werr != syscall.EAGAIN {
			out.err = cc.opError("write", cc.sa.werr)
			out.buf = out.buf[:0]
			return out.err
		}
		// The socket took part of it (its buffer is full): the rest goes the usual way,
		// under the write deadline, and readHead reads the response.
		out.buf = out.buf[:copy(out.buf, out.buf[cc.sa.wrote:])]
		return out.flush()
	}
	out.buf = out.buf[:0]
	if err != nil && in.buffered() == 0 && in.err == nil {
		in.err = err
	}
	return nil
}

// NewClientConn returns a ClientConn speaking HTTP/1.1 over c.
func NewClientConn(c net.Conn, opts ClientOptions) *ClientConn {
	cc := &ClientConn{conn: c, opts: opts.withDefaults()}
	cc.lim = Limits{MaxHeaderBytes: cc.opts.MaxHeaderBytes, MaxHeaders: cc.opts.MaxHeaders,
		MaxChunkExtension: cc.opts.MaxChunkExtension}.withDefaults()
	cc.in = inbuf{conn: c, perRead: cc.opts.ReadTimeout}
	if scn, ok := c.(syscall.Conn); ok && rawIdleWait {
		if raw, err := scn.SyscallConn(); err == nil {
			cc.in.raw = raw
		}
	}
	cc.out = outbuf{conn: c, perWrite: cc.opts.WriteTimeout}
	cc.body.cc = cc
	cc.upgraded.cc = cc
	return cc
}

// Reusable reports whether cc is idle and can carry another request: it is not in a round
// trip, was not upgraded, closed or broken.
func (cc *ClientConn) Reusable() bool { return cc.state.Load() == ccIdle }

// Requests reports how many round trips cc has started.
func (cc *ClientConn) Requests() int { return cc.requests }

// Conn returns the underlying connection.
func (cc *ClientConn) Conn() net.Conn { return cc.conn }

// Close closes the connection. A round trip in progress fails; its Release still happens
// when its body is closed.
func (cc *ClientConn) Close() error {
	cc.state.Store(ccClosed)
	cc.unwatch()
	return cc.conn.Close()
}

var errNotIdle = errors.New("http1: client connection is not idle")

// RoundTrip writes req and reads the response head. See the package documentation of the
// request framing rules in docs/http1.md. The Response and its strings belong to cc and are
// valid until resp.Body is closed, which the caller must always do: Close ends the exchange and
// calls Release. resp.Body is never nil: for responses without content (to HEAD, 204, 304) it
// is empty; for 101 Switching Protocols (and 2xx to CONNECT) it is the raw connection, an
// io.ReadWriteCloser.
//
// Errors are *fault.Error with Source fault.Upstream (fault.Internal for a request that cannot
// be written, fault.Downstream when reading req.Body failed). Reused is set when cc had carried
// earlier requests, and Retry when additionally nothing of a response had arrived (a stale
// pooled connection); whether the request body can be sent again is the caller's concern.
func (cc *ClientConn) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	if !cc.state.CompareAndSwap(ccIdle, ccBusy) {
		if cc.state.Load() == ccClosed {
			cc.released = false
			return nil, cc.fail(fault.ConnectionClosed, net.ErrClosed, false)
		}
		return nil, fault.New(fault.Internal, fault.Unknown, errNotIdle)
	}
	cc.requests++
	cc.reused = cc.requests > 1
	cc.released = false
	cc.resp.Reset()
	cc.ctx = ctx
	// Switching the watch also undoes a cancellation of an earlier context that fired after
	// its exchange, while the connection was idle or just now (see watch).
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return nil, cc.fail(fault.Canceled, err, false)
		}
		cc.watch(ctx)
	} else {
		cc.unwatch()
	}
	if err := cc.writeHead(req); err != nil {
		return nil, cc.failWith(fault.New(fault.Internal, fault.Unknown, err))
	}
	hasBody := req.Body != nil && req.ContentLength != 0
	expect := hasBody && req.Header.HasToken("Expect", "100-continue")
	var werr error
	bodySent := !hasBody
	switch {
	case !hasBody:
		werr = cc.sendAwait()
	case expect:
		werr = cc.out.flush()
	}
	if werr == nil && hasBody && !expect {
		if err := cc.writeBody(req); err != nil {
			if _, ok := err.(*fault.Error); ok {
				return nil, cc.failWith(err)
			}
			werr = err
		}
		bodySent = true
	}
	if werr != nil && cc.in.buffered() == 0 && !cc.peekAfterWriteError() {
		return nil, cc.writeFailure(werr)
	}
	waitContinue := expect && werr == nil
	// Interim heads count against the head size limit together with the final one, so a
	// stream of 1xx responses cannot make the client read more than one head's worth.
	budget := cc.opts.MaxHeaderBytes
	for interim := 0; ; interim++ {
		if interim > maxInterim {
			return nil, cc.failWith(cc.invalid(errTooManyInterim))
		}
		timedOut, n, err := cc.readHead(waitContinue, budget)
		if err != nil {
			if werr != nil {
				return nil, cc.writeFailure(werr)
			}
			return nil, cc.failWith(err)
		}
		if !timedOut && cc.resp.Status < 200 && cc.resp.Status != 101 {
			budget -= n
			if req.Interim != nil {
				// An error that is not a *fault.Error counts as an internal one.
				if fe := fault.As(req.Interim(cc.resp.Status, &cc.resp.Header)); fe != nil {
					return nil, cc.failWith(fe)
				}
			}
		}
		if timedOut || (waitContinue && cc.resp.Status == 100) {
			waitContinue = false
			if err := cc.writeBody(req); err != nil {
				if _, ok := err.(*fault.Error); ok {
					return nil, cc.failWith(err)
				}
				werr = err
				if cc.in.buffered() == 0 && !cc.peekAfterWriteError() {
					return nil, cc.writeFailure(werr)
				}
			}
			bodySent = true
			if timedOut {
				continue
			}
		}
		if cc.resp.Status >= 200 || cc.resp.Status == 101 {
			break
		}
		cc.resp.Header.Reset() // the interim response was delivered or dropped (RFC 9110 section 15.2)
	}
	if err := cc.setupBody(req); err != nil {
		return nil, cc.failWith(err)
	}
	if werr != nil || !bodySent {
		cc.keepAlive = false
	}
	return &cc.resp, nil
}

// watch makes ctx interrupt the connection's I/O when it is done, reusing the registration
// made for an earlier round trip with the same context. A registration for another context is
// undone first, with the past deadline its firing left: the firing and the switch are
// serialized by watchMu and a stale firing does nothing (interruptFor), so the end of an
// earlier context (for example an HTTP/2 downstream stream that finished) can never interrupt
// a later round trip.
func (cc *ClientConn) watch(ctx context.Context) {
	cc.watchMu.Lock()
	defer cc.watchMu.Unlock()
	if ctx == cc.watched && cc.stop != nil {
		return
	}
	cc.unwatchLocked()
	cc.watched, cc.stop = ctx, context.AfterFunc(ctx, func() { cc.interruptFor(ctx) })
}

// unwatch removes the context registration, if any, and undoes its firing.
func (cc *ClientConn) unwatch() {
	cc.watchMu.Lock()
	defer cc.watchMu.Unlock()
	cc.unwatchLocked()
}

func (cc *ClientConn) unwatchLocked() {
	if cc.stop != nil {
		cc.stop()
	}
	cc.watched, cc.stop = nil, nil
	if cc.canceled.Swap(false) && cc.state.Load() != ccClosed {
		cc.conn.SetDeadline(time.Time{})
		cc.in.rdl.forget()
		cc.out.wdl.forget()
	}
}

// interruptFor runs when the watched context ctx is done: blocked reads and writes fail. It
// does nothing when the connection watches another context by now.
func (cc *ClientConn) interruptFor(ctx context.Context) {
	cc.watchMu.Lock()
	defer cc.watchMu.Unlock()
	if cc.watched != ctx {
		return
	}
	cc.canceled.Store(true)
	cc.conn.SetDeadline(time.Unix(1, 0))
}

// writeHead buffers the request line and fields (RFC 9112 section 3).
func (cc *ClientConn) writeHead(req *message.Request) error {
	if !validTokenString(req.Method) || !validTarget(req.Target) || !validHostString(req.Authority) {
		return errInvalidRequestHead
	}
	w := &cc.out
	w.writeString(req.Method)
	w.writeByte(' ')
	w.writeString(req.Target)
	w.writeString(" HTTP/1.1\r\nHost: ")
	w.writeString(req.Authority)
	w.writeString("\r\n")
	hasUpgrade, connUpgrade := false, false
	for _, f := range req.Header.Fields() {
		if !validTokenString(f.Name) || !validFieldValueString(f.Value) {
			return errInvalidRequestHead
		}
		if isFramingField(f.Name) || message.EqualFold(f.Name, "Host") {
			continue
		}
		switch {
		case message.EqualFold(f.Name, "Upgrade"):
			hasUpgrade = true
		case message.EqualFold(f.Name, "Connection"):
			connUpgrade = connUpgrade || message.ContainsToken(f.Value, "upgrade")
		}
		w.writeString(f.Name)
		w.writeString(": ")
		w.writeString(f.Value)
		w.writeString("\r\n")
	}
	if hasUpgrade && !connUpgrade {
		w.writeString("Connection: Upgrade\r\n")
	}
	switch {
	case req.Body == nil || req.ContentLength == 0:
		if !bodylessMethod(req.Method) {
			w.writeString("Content-Length: 0\r\n")
		}
	case req.ContentLength > 0:
		w.writeString("Content-Length: ")
		w.writeInt(req.ContentLength, false)
		w.writeString("\r\n")
	default:
		w.writeString("Transfer-Encoding: chunked\r\n")
	}
	w.writeString("\r\n")
	return nil
}

var errInvalidRequestHead = errors.New("http1: request has an invalid method, target, authority or header field")

func validTarget(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// bodylessMethod reports whether the method's semantics anticipate no content, so that
// "Content-Length: 0" is not sent for an empty body (RFC 9110 section 8.6).
func bodylessMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return true
	}
	return false
}

var copyBufPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// writeBody streams req.Body after the buffered head. Errors reading the body are returned as
// *fault.Error; errors writing are returned as they are.
func (cc *ClientConn) writeBody(req *message.Request) error {
	bp := copyBufPool.Get().(*[32 << 10]byte)
	defer copyBufPool.Put(bp)
	buf := bp[:]
	w := &cc.out
	chunked := req.ContentLength < 0
	remaining := req.ContentLength
	for {
		p := buf
		if !chunked && int64(len(p)) > remaining {
			p = p[:remaining]
		}
		var n int
		var err error
		if len(p) > 0 {
			n, err = req.Body.Read(p)
		} else {
			err = io.EOF
		}
		if n > 0 {
			if chunked {
				w.writeInt(int64(n), true)
				w.writeString("\r\n")
				if werr := w.write(p[:n]); werr != nil {
					return werr
				}
				w.writeString("\r\n")
			} else {
				remaining -= int64(n)
				if werr := w.write(p[:n]); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if fe, ok := err.(*fault.Error); ok {
				return fe
			}
			return fault.New(fault.Internal, fault.Unknown, err)
		}
	}
	if !chunked && remaining > 0 {
		return fault.New(fault.Internal, fault.Unknown, errShortBody)
	}
	if chunked {
		w.writeString("0\r\n")
		for _, f := range req.Trailer.Fields() {
			if validTokenString(f.Name) && validFieldValueString(f.Value) && !forbiddenTrailer(f.Name) {
				w.writeString(f.Name)
				w.writeString(": ")
				w.writeString(f.Value)
				w.writeString("\r\n")
			}
		}
		w.writeString("\r\n")
	}
	return w.flush()
}

var errShortBody = errors.New("http1: request body shorter than its Content-Length")

// peekAfterWriteError reports whether the server sent something after a write failed: it
// may have answered early (413) and closed its read side.
func (cc *ClientConn) peekAfterWriteError() bool {
	if cc.canceled.Load() {
		return false
	}
	err := cc.in.fill()
	cc.in.err = nil
	return err == nil && cc.in.buffered() > 0
}

// readHead reads one response head of at most limit bytes into cc.resp and reports its size.
// With waitContinue it waits at most the continue timeout and reports timedOut when nothing
// arrived in that time.
func (cc *ClientConn) readHead(waitContinue bool, limit int) (timedOut bool, size int, err error) {
	in := &cc.in
	if waitContinue {
		in.perRead = 0
		cc.conn.SetReadDeadline(time.Now().Add(cc.opts.ContinueTimeout))
		in.rdl.forget()
		defer func() {
			in.perRead = cc.opts.ReadTimeout
			if cc.opts.ReadTimeout == 0 && !cc.canceled.Load() {
				cc.conn.SetReadDeadline(time.Time{})
			}
		}()
	}
	var scan headScanner
	if limit <= 0 {
		return false, 0, cc.invalid(errResponseTooLarge)
	}
	for {
		n, perr := scan.scan(in.buf[in.r:in.w], limit, limit, cc.opts.MaxHeaders)
		if perr != nil {
			return false, 0, cc.invalid(responseScanError(perr, in.buf[in.r:in.w]))
		}
		if n == 0 && !statusLinePrefix(in.buf[in.r:in.w]) {
			// Not an HTTP/1 response at all: say so now rather than wait for more bytes
			// and then blame the size.
			return false, 0, cc.invalid(errNotHTTPResponse)
		}
		if n > 0 {
			head := in.buf[in.r+scan.skip : in.r+n]
			in.r += n
			in.keep = in.r
			cc.resp.Header.Reset()
			if perr := parseResponseHead(head, &cc.resp, &cc.rh, cc.opts.MaxHeaders); perr != nil {
				return false, 0, cc.invalid(perr)
			}
			return false, n, nil
		}
		if err := in.fill(); err != nil {
			if waitContinue && in.buffered() == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !cc.canceled.Load() {
				in.err = nil
				return true, 0, nil
			}
			if in.buffered() == 0 && in.keep == 0 {
				return false, 0, cc.ioError(err, fault.ReadTimeout, true)
			}
			return false, 0, cc.ioError(err, fault.ReadTimeout, false)
		}
	}
}

// setupBody decides how the response body is delimited (RFC 9112 section 6.3) and prepares
// resp.Body.
func (cc *ClientConn) setupBody(req *message.Request) error {
	rh, resp := &cc.rh, &cc.resp
	// A response may carry transfer codings Verge does not decode (RFC 9112 section 6.3,
	// item 4): with chunked last, chunked delimits the body; otherwise the body runs until
	// the origin closes the connection. The codings travel on in resp.TransferCoding.
	// Requests stay strict: the server answers such a request 501 or 400.
	var codings []byte
	lenientTE := rh.hasTE && (rh.teErr == errUnknownTE || rh.teErr == errChunkedNotLast)
	switch {
	case rh.hasTE && rh.teErr != nil && !lenientTE:
		return cc.invalid(rh.teErr)
	case rh.hasTE && rh.hasCL:
		return cc.invalid(errCLAndTE)
	case lenientTE:
		codings, rh.chunked = responseCodings(rh.teValue)
	}
	cc.keepAlive = !rh.connClose && (!rh.http10 || rh.connKeepAlive)
	if resp.Status == 101 || (req.Method == "CONNECT" && resp.Status/100 == 2) {
		cc.state.Store(ccUpgraded)
		cc.keepAlive = false
		resp.ContentLength = -1
		// The timeouts bound the exchange; the stream is the caller's to bound. A deadline
		// left from reading the head would otherwise cut it at a fixed time however busy.
		// A cancellation keeps its past deadline (watchMu orders this against interruptFor).
		cc.watchMu.Lock()
		if !cc.canceled.Load() {
			cc.conn.SetDeadline(time.Time{})
			cc.in.rdl.forget()
			cc.out.wdl.forget()
		}
		cc.watchMu.Unlock()
		cc.upgraded.start()
		resp.Body = &cc.upgraded
		return nil
	}
	mode, cl := bodyNone, int64(0)
	switch {
	case req.Method == "HEAD" || resp.Status == 204 || resp.Status == 304:
		resp.ContentLength = -1
		if rh.hasCL && resp.Status != 204 {
			resp.ContentLength = rh.contentLength
		} else if resp.Status == 204 {
			resp.ContentLength = 0
		}
	case rh.chunked:
		mode, resp.ContentLength = bodyChunked, -1
		resp.TransferCoding = bstr(codings)
	case lenientTE:
		mode, resp.ContentLength, cc.keepAlive = bodyClose, -1, false
		resp.TransferCoding = bstr(codings)
	case rh.hasCL:
		mode, cl, resp.ContentLength = bodyLength, rh.contentLength, rh.contentLength
	default:
		mode, resp.ContentLength, cc.keepAlive = bodyClose, -1, false
	}
	cc.body.br.init(&cc.in, mode, cl, &cc.lim, &resp.Trailer, fault.Upstream)
	resp.Body = &cc.body
	return nil
}

// responseScanError classifies what the head scanner found wrong with a response: bytes that
// do not start with an HTTP/1 status line are a malformed response; a head that is one but
// grows past the limits is too large; other framing errors are malformed too.
func responseScanError(perr *protoError, data []byte) *protoError {
	if !statusLinePrefix(data) {
		return errNotHTTPResponse
	}
	switch perr {
	case errHeadTooLarge, errRequestLineTooLong:
		return errResponseTooLarge
	case errTooManyHeaders:
		return errTooManyRespFields
	}
	return errMalformedResponse
}

// statusLinePrefix reports whether data, after any empty lines, is consistent with the
// start of a status line ("HTTP/"); fewer bytes than that are consistent if they match.
func statusLinePrefix(data []byte) bool {
	i := 0
	for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
		i++
	}
	data = data[i:]
	const p = "HTTP/"
	n := min(len(data), len(p))
	return string(data[:n]) == p[:n]
}

func (cc *ClientConn) invalid(perr *protoError) error {
	return &fault.Error{Source: fault.Upstream, Kind: fault.InvalidResponse, Reused: cc.reused, Cause: perr}
}

// ioError classifies a read or write error; nothingReceived marks it retryable on a reused
// connection.
func (cc *ClientConn) ioError(err error, timeoutKind fault.Kind, nothingReceived bool) error {
	var fe *fault.Error
	if cc.canceled.Load() && cc.ctx != nil && cc.ctx.Err() != nil {
		fe = &fault.Error{Source: fault.Upstream, Kind: fault.Canceled, Cause: cc.ctx.Err()}
	} else {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		fe = fault.Classify(fault.Upstream, err)
		if fe.Kind == fault.ReadTimeout {
			fe.Kind = timeoutKind
		}
	}
	fe.Reused = cc.reused
	fe.Retry = cc.reused && nothingReceived && fe.Kind != fault.Canceled
	return fe
}

func (cc *ClientConn) writeFailure(werr error) error {
	return cc.failWith(cc.ioError(werr, fault.WriteTimeout, true))
}

// fail ends a failed round trip with a new error.
func (cc *ClientConn) fail(kind fault.Kind, cause error, retry bool) error {
	return cc.failWith(&fault.Error{Source: fault.Upstream, Kind: kind, Cause: cause,
		Reused: cc.reused, Retry: retry})
}

// failWith closes the connection, releases it as not reusable and returns err.
func (cc *ClientConn) failWith(err error) error {
	cc.keepAlive = false
	cc.finish(false)
	return err
}

// finish ends the round trip: the connection goes idle (reusable) or is closed, the buffers
// go back to their pools and Release is called, once.
func (cc *ClientConn) finish(reusable bool) {
	if cc.released {
		return
	}
	cc.released = true
	cc.ctx = nil
	if reusable && (cc.canceled.Load() || cc.in.buffered() > 0 || cc.out.err != nil || cc.in.err != nil ||
		cc.state.Load() != ccBusy) {
		reusable = false
	}
	cc.in.release()
	cc.out.release()
	cc.in.err = nil
	if reusable {
		cc.idleSince = mono()
		cc.state.Store(ccIdle)
	} else {
		cc.state.Store(ccClosed)
		cc.unwatch()
		cc.conn.Close()
	}
	if cc.opts.Release != nil {
		cc.opts.Release(cc, reusable)
	}
}
