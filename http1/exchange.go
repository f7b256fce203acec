package http1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/verge-edge/verge/message"
)

// Exchange is one request and its response on a downstream HTTP/1.x connection. It implements
// message.ServerExchange and message.Upgrader. An Exchange is reused for the next request of
// its connection: it and the strings of its Request are valid only until the handler returns.
type Exchange struct {
	c   *serverConn
	req message.Request
	rh  reqHead

	body bodyReader
	// imu orders interim heads: WriteInterim may run on another goroutine (an HTTP/2 or
	// HTTP/3 upstream's reader relaying 1xx responses) while the handler's request body
	// reader sends 100 Continue. Neither happens once the final head is written.
	imu           sync.Mutex
	continueSent  bool
	headWritten   bool
	finished      bool
	aborted       bool
	upgraded      bool
	closeAfter    bool // close the connection after this response
	respMode      bodyMode
	respRemaining int64  // bodyLength: bytes still to write
	respTE        string // transfer codings passed through (message.Response.TransferCoding)
	discardBody   bool   // HEAD: body bytes are accepted and dropped
}

var (
	_ message.ServerExchange = (*Exchange)(nil)
	_ message.Upgrader       = (*Exchange)(nil)
	_ message.InterimWriter  = (*Exchange)(nil)
)

// Errors returned by the response methods.
var (
	ErrHeadWritten       = errors.New("http1: response head already written")
	ErrHeadNotWritten    = errors.New("http1: response head not written")
	ErrFinished          = errors.New("http1: exchange already finished")
	ErrBodyNotAllowed    = errors.New("http1: response status does not allow a body")
	ErrContentLength     = errors.New("http1: body length does not match Content-Length")
	ErrUseUpgrade        = errors.New("http1: 101 Switching Protocols must be sent with Upgrade")
	ErrCannotUpgrade     = errors.New("http1: upgrade needs a 101 response, or a 2xx response to CONNECT")
	ErrInvalidFieldValue = errors.New("http1: invalid header field name or value")
)

func (ex *Exchange) reset() {
	ex.req.Reset()
	ex.continueSent, ex.headWritten, ex.finished, ex.aborted = false, false, false, false
	ex.upgraded, ex.closeAfter, ex.discardBody = false, false, false
	ex.respMode, ex.respRemaining, ex.respTE = bodyNone, 0, ""
}

// Request returns the parsed request. Header holds the fields in arrival order without Host
// (see Authority), Content-Length and Transfer-Encoding (see ContentLength and Body). Body is
// nil when the request has none; reading it sends 100 Continue first when the client asked.
func (ex *Exchange) Request() *message.Request { return &ex.req }

// Context returns the connection's context: it is done when the server shuts the connection
// down. It does not allocate.
func (ex *Exchange) Context() context.Context { return ex.c.ctx }

// Conn describes the connection the request arrived on.
func (ex *Exchange) Conn() *message.ConnInfo { return ex.c.info }

// requestBody is the Exchange seen as the request body reader.
type requestBody Exchange

// Read reads the request body. Errors are *fault.Error values from fault.Downstream; after one
// the connection closes once the response is finished.
func (b *requestBody) Read(p []byte) (int, error) {
	ex := (*Exchange)(b)
	if ex.rh.expect100 && !ex.body.done {
		if err := ex.sendContinue(); err != nil {
			return 0, ex.body.fail(err)
		}
	}
	n, err := ex.body.Read(p)
	if err != nil && err != io.EOF {
		ex.closeAfter = true
	}
	return n, err
}

// sendContinue sends 100 Continue before the first read of a body that asked for it, unless
// one went out already or the final head is written.
func (ex *Exchange) sendContinue() error {
	ex.imu.Lock()
	defer ex.imu.Unlock()
	if ex.continueSent || ex.headWritten {
		return nil
	}
	ex.continueSent = true
	ex.c.out.writeString("HTTP/1.1 100 Continue\r\n\r\n")
	return ex.c.out.flush()
}

// WriteInterim sends an informational response (100-199 except 101) with the fields of h at
// once. Nothing is sent to an HTTP/1.0 client (RFC 9110 section 15.2), nor a second 100
// Continue. Framing and connection fields of h are not sent. It may be called from another
// goroutine than the handler's while the handler waits for an upstream, but not concurrently
// with the final WriteHeader.
func (ex *Exchange) WriteInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == 101 {
		return fmt.Errorf("http1: invalid interim status %d", status)
	}
	ex.imu.Lock()
	defer ex.imu.Unlock()
	switch {
	case ex.finished || ex.aborted || ex.upgraded:
		return ErrFinished
	case ex.headWritten:
		return ErrHeadWritten
	case ex.rh.http10:
		return nil // HTTP/1.0 clients do not expect interim responses
	case status == 100 && ex.continueSent:
		return nil
	}
	resp := message.Response{Status: status}
	if h != nil {
		resp.Header = *h
	}
	if err := ex.writeHead(&resp, false, false); err != nil {
		return err
	}
	if status == 100 {
		ex.continueSent = true
	}
	// The relay of an HTTP/2 or HTTP/3 upstream runs on that connection's reader, which other
	// requests share: a client that takes no bytes must not hold it for the whole write
	// timeout. A head of a few hundred bytes that cannot be written in interimWriteTimeout
	// fails the connection (the error is sticky, so the final response fails as well).
	out := &ex.c.out
	saved := out.perWrite
	if saved <= 0 || saved > interimWriteTimeout {
		out.perWrite = interimWriteTimeout
	}
	err := out.flush()
	out.perWrite = saved
	if saved <= 0 && err == nil {
		out.wdl.arm(out.conn, true, 0) // no write timeout: clear the interim one
	}
	return err
}

// interimWriteTimeout bounds the write of an interim response head.
const interimWriteTimeout = 5 * time.Second

// WriteHeader writes the response head. Framing comes from resp.ContentLength alone: zero or
// more sends Content-Length; -1 sends chunked to HTTP/1.1 clients and closes the connection
// after the body for HTTP/1.0 clients. Content-Length and Transfer-Encoding fields in
// resp.Header are ignored. HEAD requests and 1xx, 204 and 304 responses carry no body; HEAD
// and 304 responses keep a known Content-Length. A 1xx status other than 101 is sent as an
// interim response (see WriteInterim) and another head may follow. A response with
// TransferCoding goes to HTTP/1.1 clients with "Transfer-Encoding: <codings>, chunked" (or
// close-delimited with the codings as they are when they already hold chunked); HTTP/1.0
// clients get the bytes close-delimited without Transfer-Encoding (RFC 9112 section 6.1).
func (ex *Exchange) WriteHeader(resp *message.Response) error {
	switch {
	case ex.finished || ex.aborted || ex.upgraded:
		return ErrFinished
	case ex.headWritten:
		return ErrHeadWritten
	case resp.Status < 100 || resp.Status > 999:
		return fmt.Errorf("http1: invalid status code %d", resp.Status)
	case resp.Status == 101:
		return ErrUseUpgrade
	}
	if resp.Status < 200 {
		return ex.WriteInterim(resp.Status, &resp.Header)
	}
	w := &ex.c.out
	method := ex.req.Method
	noBody := method == "HEAD" || resp.Status == 204 || resp.Status == 304
	ex.closeAfter = ex.closeAfter || ex.wantsClose()
	writeCL := resp.ContentLength >= 0 && resp.Status != 204
	switch {
	case noBody:
		ex.respMode = bodyNone
		ex.discardBody = method == "HEAD"
	case resp.TransferCoding != "" && !ex.rh.http10:
		if !validFieldValueString(resp.TransferCoding) {
			return ErrInvalidFieldValue
		}
		// The body still carries codings Verge does not decode: they are passed on, with
		// chunked applied last, or with the connection's close as the delimiter when the
		// origin's list already holds a chunked that is not final (RFC 9112 section 6.1).
		ex.respTE, writeCL = resp.TransferCoding, false
		if message.ContainsToken(resp.TransferCoding, "chunked") {
			ex.respMode, ex.closeAfter = bodyClose, true
		} else {
			ex.respMode = bodyChunked
		}
	case resp.ContentLength >= 0:
		ex.respMode, ex.respRemaining = bodyLength, resp.ContentLength
	case ex.rh.http10:
		ex.respMode, ex.closeAfter = bodyClose, true // RFC 9112 section 6.3, item 8
	default:
		ex.respMode = bodyChunked
	}
	if err := ex.writeHead(resp, writeCL, true); err != nil {
		return err
	}
	ex.headWritten = true
	return w.err
}

// wantsClose applies RFC 9112 section 9.3 and the server's own reasons to close after the
// response.
func (ex *Exchange) wantsClose() bool {
	switch {
	case ex.c.life.shutdown.Load(), ex.rh.connClose, ex.rh.http10 && !ex.rh.connKeepAlive:
		return true
	case ex.req.Body == nil || ex.body.done:
		return false
	case ex.body.err != nil:
		return true
	case ex.rh.expect100 && !ex.continueSent:
		return true // the client may never send the body it announced
	case ex.body.mode == bodyLength && ex.body.remaining > maxDrain:
		return true
	}
	return false
}

// writeHead writes the status line and fields. final heads get framing and connection fields.
func (ex *Exchange) writeHead(resp *message.Response, writeCL, final bool) error {
	reason := resp.Reason
	if reason == "" {
		reason = message.StatusText(resp.Status)
	} else if !validFieldValueString(reason) {
		return ErrInvalidFieldValue
	}
	fields := resp.Header.Fields()
	for i := range fields {
		if !validTokenString(fields[i].Name) || !validFieldValueString(fields[i].Value) {
			return ErrInvalidFieldValue
		}
	}
	w := &ex.c.out
	w.writeString("HTTP/1.1 ")
	w.writeInt(int64(resp.Status), false)
	w.writeByte(' ')
	w.writeString(reason)
	w.writeString("\r\n")
	hasClose, hasKeepAlive := false, false
	interim := resp.Status < 200 && resp.Status != 101
	for i := range fields {
		f := &fields[i]
		if isFramingField(f.Name) || interim && message.ConnectionSpecific(f.Name) {
			continue
		}
		if message.EqualFold(f.Name, "Connection") {
			hasClose = hasClose || message.ContainsToken(f.Value, "close")
			hasKeepAlive = hasKeepAlive || message.ContainsToken(f.Value, "keep-alive")
		}
		w.writeString(f.Name)
		w.writeString(": ")
		w.writeString(f.Value)
		w.writeString("\r\n")
	}
	if final {
		if writeCL {
			w.writeString("Content-Length: ")
			w.writeInt(resp.ContentLength, false)
			w.writeString("\r\n")
		} else if ex.respTE != "" {
			w.writeString("Transfer-Encoding: ")
			w.writeString(ex.respTE)
			if ex.respMode == bodyChunked {
				w.writeString(", chunked")
			}
			w.writeString("\r\n")
		} else if ex.respMode == bodyChunked {
			w.writeString("Transfer-Encoding: chunked\r\n")
		}
		if hasClose {
			ex.closeAfter = true
		}
		switch {
		case ex.closeAfter && !hasClose:
			w.writeString("Connection: close\r\n")
		case !ex.closeAfter && ex.rh.http10 && !hasKeepAlive:
			w.writeString("Connection: keep-alive\r\n")
		}
	}
	w.writeString("\r\n")
	return w.err
}

func isFramingField(name string) bool {
	return message.EqualFold(name, "Content-Length") || message.EqualFold(name, "Transfer-Encoding")
}

// forbiddenTrailer reports whether a field must not be sent in a trailer section: framing,
// routing (Host), the trailer declaration itself and connection management (RFC 9110 section
// 6.5.1, RFC 9112 section 7.1.2). A recipient that merges trailers into the header section
// would otherwise take them as the message's own.
func forbiddenTrailer(name string) bool {
	return message.ConnectionSpecific(name) || message.EqualFold(name, "TE") ||
		message.EqualFold(name, "Trailer") || message.EqualFold(name, "Host") ||
		message.EqualFold(name, "Content-Length")
}

// Write sends response body bytes, chunk-framed when the response is chunked. Small writes are
// buffered until Flush, Finish or a full buffer; large ones go to the connection directly. It
// blocks while the client does not read. Writing more than the announced Content-Length
// fails with ErrContentLength.
func (ex *Exchange) Write(p []byte) (int, error) {
	switch {
	case ex.finished || ex.aborted || ex.upgraded:
		return 0, ErrFinished
	case !ex.headWritten:
		return 0, ErrHeadNotWritten
	}
	w := &ex.c.out
	switch ex.respMode {
	case bodyNone:
		if ex.discardBody {
			return len(p), nil
		}
		return 0, ErrBodyNotAllowed
	case bodyLength:
		if int64(len(p)) > ex.respRemaining {
			n := int(ex.respRemaining)
			if err := w.write(p[:n]); err != nil {
				return 0, err
			}
			ex.respRemaining = 0
			return n, ErrContentLength
		}
		ex.respRemaining -= int64(len(p))
		return len(p), w.write(p)
	case bodyChunked:
		if len(p) == 0 {
			return 0, nil
		}
		w.writeInt(int64(len(p)), true)
		w.writeString("\r\n")
		if err := w.writeThen(p, crlf); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return len(p), w.write(p)
}

// Flush sends the buffered head and body bytes now (for streamed responses such as
// text/event-stream).
func (ex *Exchange) Flush() error {
	if ex.aborted {
		return ErrFinished
	}
	return ex.c.out.flush()
}

// Finish ends the response. For a chunked response it sends the last chunk and the trailer
// fields; trailers are dropped for other framings. If fewer bytes than the Content-Length were
// written, the connection is closed and ErrContentLength returned.
func (ex *Exchange) Finish(trailer *message.Header) error {
	switch {
	case ex.finished || ex.aborted || ex.upgraded:
		return ErrFinished
	case !ex.headWritten:
		return ErrHeadNotWritten
	}
	w := &ex.c.out
	switch ex.respMode {
	case bodyLength:
		if ex.respRemaining != 0 {
			w.flush()
			ex.Abort(ErrContentLength)
			return ErrContentLength
		}
	case bodyChunked:
		w.writeString("0\r\n")
		if trailer != nil {
			for _, f := range trailer.Fields() {
				if !validTokenString(f.Name) || !validFieldValueString(f.Value) || forbiddenTrailer(f.Name) {
					continue
				}
				w.writeString(f.Name)
				w.writeString(": ")
				w.writeString(f.Value)
				w.writeString("\r\n")
			}
		}
		w.writeString("\r\n")
	}
	ex.finished = true
	return w.flush()
}

// Abort ends the exchange abnormally by closing the connection at once, so that the client sees
// a truncated response rather than a complete one. Buffered bytes are dropped.
func (ex *Exchange) Abort(err error) {
	if ex.aborted || ex.upgraded {
		return
	}
	ex.aborted, ex.closeAfter = true, true
	ex.c.debug("exchange aborted", err)
	ex.c.conn.Close()
}

// Upgrade writes resp, a 101 Switching Protocols response (or a 2xx response to a CONNECT
// request), and hands the connection over: the returned stream first yields any bytes the
// client sent after its request head, then reads from the connection. Deadlines are cleared.
// The caller owns the stream and must Close it; ServeConn returns without closing it once the
// handler returns.
func (ex *Exchange) Upgrade(resp *message.Response) (io.ReadWriteCloser, error) {
	switch {
	case ex.finished || ex.aborted || ex.upgraded:
		return nil, ErrFinished
	case ex.headWritten:
		return nil, ErrHeadWritten
	case resp.Status != 101 && !(ex.req.Method == "CONNECT" && resp.Status/100 == 2):
		return nil, ErrCannotUpgrade
	}
	if err := ex.writeHead(resp, false, false); err != nil {
		return nil, err
	}
	sc := ex.c
	if err := sc.out.flush(); err != nil {
		return nil, err
	}
	ex.headWritten, ex.upgraded = true, true
	uc := &upgradedConn{Conn: sc.conn}
	if n := sc.in.buffered(); n > 0 {
		uc.pending = append([]byte(nil), sc.in.buf[sc.in.r:sc.in.w]...)
		sc.in.r = sc.in.w
	}
	uc.err = sc.in.err
	sc.conn.SetDeadline(time.Time{})
	return uc, nil
}

// upgradedConn is a connection taken over after a protocol switch, with the bytes that were
// already read from it.
type upgradedConn struct {
	net.Conn
	pending []byte
	err     error
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if len(u.pending) > 0 {
		n := copy(p, u.pending)
		u.pending = u.pending[n:]
		return n, nil
	}
	if u.err != nil {
		return 0, u.err
	}
	return u.Conn.Read(p)
}

// Buffered returns how many bytes the client sent after its request head that were not read
// yet from the stream.
func (u *upgradedConn) Buffered() int { return len(u.pending) }

// SyscallConn returns the raw connection underneath, so that its new owner can wait for it
// to be readable without a goroutine (a WebSocket a worker's Durable Object holds). It fails
// with errors.ErrUnsupported when the connection has none (TLS).
func (u *upgradedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := u.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the connection: the client reads end of file and may still send. It
// fails with errors.ErrUnsupported when the connection cannot half-close.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
