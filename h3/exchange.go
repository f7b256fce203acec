package h3

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// bridge is the HTTP/3 flavour of the shared exchange core: 304 responses carry no
// Content-Length, and Abort also fails blocked reads of the request body.
var bridge = httpbridge.NewProtocol(httpbridge.ProtocolConfig{
	Name:            "h3",
	Version:         "HTTP/3",
	DownstreamError: downstreamError,
	OmitLengthOn304: true,
	AbortReads:      true,
})

// tooEarlyBody is the body of the 425 answer to a non-idempotent request in 0-RTT data.
var tooEarlyBody = []byte("425 Too Early: retry this request after the handshake\n")

// tooLargeBody is the body of the 413 answer to a request whose content-length is over
// Server.MaxBodySize.
var tooLargeBody = []byte("413 Content Too Large\n")

// plainAnswer answers without running the handler.
func plainAnswer(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// streamHandler is the http.Handler quic-go's HTTP/3 server calls for each request stream.
type streamHandler struct{ st *serverState }

// ServeHTTP converts the stream into an exchange, runs the Server's handler and resets the
// stream when the handler did not finish the exchange.
func (h *streamHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h.st
	cd, _ := r.Context().Value(connDataKey{}).(*connData)
	if cd == nil {
		panic(http.ErrAbortHandler)
	}
	early := st.quic.Allow0RTT && !handshakeDone(cd)
	if early && !message.Idempotent(r.Method) { // a replayable request (RFC 9110 section 9.2.2) may come in 0-RTT
		// RFC 8470 section 5.2: the client retries once the handshake is complete.
		plainAnswer(w, http.StatusTooEarly, tooEarlyBody)
		return
	}
	if st.maxBody > 0 && r.ContentLength > st.maxBody {
		// quic-go then stops the client sending (STOP_SENDING H3_NO_ERROR).
		plainAnswer(w, http.StatusRequestEntityTooLarge, tooLargeBody)
		return
	}
	fn := *st.srv.handler.Load()
	if fn == nil {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ex := &exchange{cd: cd, rw: w, sendTO: st.sendTO}
	ex.body = checkedBody{ex: ex, rc: r.Body, max: st.maxBody, readTO: st.readTO}
	r.Body = &ex.body
	ex.Init(bridge, st.logger, w, r, "https", message.HTTP3)
	if early && !ex.Request().Header.Has("early-data") {
		ex.Request().Header.Add("early-data", "1")
	}
	// quic-go cannot tell whether the stream ended with its HEADERS frame without blocking on
	// a read, so a request without Content-Length counts as bodiless when its method usually
	// has no body, and as a streamed body of unknown length otherwise.
	if r.ContentLength == 0 || r.ContentLength < 0 && bodilessMethod(r.Method) {
		ex.Request().ContentLength = 0
	} else {
		ex.AttachBody()
	}
	reset := ex.Run(ex, fn)
	if ex.malformed.Load() && resetStream(w, http3.ErrCodeMessageError) {
		return
	}
	if reset && ex.body.timedOut.Load() && resetStream(w, http3.ErrCodeRequestCanceled) {
		// The client stopped sending its body (Server.BodyReadTimeout): not a client's
		// cancellation, so the reset budget is left alone.
		return
	}
	if !reset {
		cd.resets.credit()
		return
	}
	if r.Context().Err() != nil && cd.resets.charge(time.Now()) {
		// Streams keep being opened and canceled (Rapid Reset, CVE-2023-44487).
		st.logger.Debug("h3: too many canceled streams; closing the connection",
			"remote", cd.info.RemoteAddr)
		cd.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "too many canceled streams")
	}
	// quic-go's server recovers this value without logging and resets the stream.
	panic(http.ErrAbortHandler)
}

// resetStream resets the request stream both ways with code, taking it over from quic-go's
// server; it reports false when that is no longer possible (response body bytes were sent).
func resetStream(w http.ResponseWriter, code http3.ErrCode) bool {
	hs, ok := w.(http3.HTTPStreamer)
	if !ok {
		return false
	}
	str, err := hs.HTTPStream()
	if err != nil {
		return false
	}
	str.CancelRead(quic.StreamErrorCode(code))
	str.CancelWrite(quic.StreamErrorCode(code))
	return true
}

// handshakeDone reports whether the connection's handshake has completed; requests seen
// before that arrived in 0-RTT early data.
func handshakeDone(cd *connData) bool {
	select {
	case <-cd.conn.HandshakeComplete():
		return true
	default:
		return false
	}
}

// exchange is one HTTP/3 request stream presented as a message.ServerExchange. Abort resets
// the stream (H3_INTERNAL_ERROR) once the handler returns, and makes blocked and later reads
// and writes fail at once.
type exchange struct {
	httpbridge.Exchange
	cd        *connData
	rw        http.ResponseWriter
	body      checkedBody
	sendTO    time.Duration // 0: none
	wdl       time.Time     // the write deadline set last
	malformed atomic.Bool   // the body contradicted content-length: reset with H3_MESSAGE_ERROR
}

var (
	_ message.ServerExchange = (*exchange)(nil)
	_ message.InterimWriter  = (*exchange)(nil)
)

// errMalformed is what writes return once the request body turned out malformed: the stream is
// reset with H3_MESSAGE_ERROR instead of answered (RFC 9114 section 4.1.2).
var errMalformed = &fault.Error{Source: fault.Downstream, Kind: fault.InvalidRequest,
	Cause: errors.New("h3: request body length differs from content-length")}

// errSendTimeout is what a write blocked for longer than Server.SendTimeout returns.
var errSendTimeout = &fault.Error{Source: fault.Downstream, Kind: fault.WriteTimeout,
	Cause: errors.New("h3: no flow-control credit granted within the send timeout")}

// WriteHeader records the response head, unless the request turned out malformed.
func (ex *exchange) WriteHeader(resp *message.Response) error {
	if ex.malformed.Load() {
		return errMalformed
	}
	return ex.Exchange.WriteHeader(resp)
}

// Write sends body bytes; a write blocked on flow control for longer than the send timeout
// fails with errSendTimeout.
func (ex *exchange) Write(p []byte) (int, error) {
	if ex.malformed.Load() {
		return 0, errMalformed
	}
	ex.armWrite()
	n, err := ex.Exchange.Write(p)
	return n, ex.writeErr(err)
}

// Flush sends what is buffered, with the same send timeout as Write.
func (ex *exchange) Flush() error {
	if ex.malformed.Load() {
		return errMalformed
	}
	ex.armWrite()
	return ex.writeErr(ex.Exchange.Flush())
}

// WriteInterim sends an informational head (see httpbridge.Exchange.WriteInterim) within
// interimSendTimeout (or the send timeout, if shorter). An interim head goes out from the
// relay of an HTTP/2 or HTTP/3 upstream, on that connection's reader, which other requests
// share: a client that grants no flow-control credit must not hold it. A head not written in
// time aborts the stream (quic-go does not report the failure, and a partly written frame
// would corrupt the stream).
func (ex *exchange) WriteInterim(status int, h *message.Header) error {
	if ex.malformed.Load() {
		return errMalformed
	}
	d, ok := ex.rw.(interface{ SetWriteDeadline(time.Time) error })
	if !ok {
		return ex.Exchange.WriteInterim(status, h)
	}
	to := interimSendTimeout
	if ex.sendTO > 0 && ex.sendTO < to {
		to = ex.sendTO
	}
	deadline := time.Now().Add(to)
	d.SetWriteDeadline(deadline)
	err := ex.Exchange.WriteInterim(status, h)
	if err == nil && !time.Now().Before(deadline) {
		ex.Abort(errSendTimeout)
		return errSendTimeout
	}
	// The next Write arms the send timeout again.
	ex.wdl = time.Time{}
	d.SetWriteDeadline(time.Time{})
	if ex.Aborted() {
		d.SetWriteDeadline(pastDeadline) // Abort raced with the deadline
	}
	return err
}

// interimSendTimeout bounds the write of an interim head, as HTTP/1's does.
const interimSendTimeout = 5 * time.Second

// pastDeadline makes blocked and later writes fail at once.
var pastDeadline = time.Unix(1, 0)

// armWrite moves the write deadline to a full send timeout from now once a sixteenth of it
// has passed, so a blocked write gets between 15/16 of the send timeout and all of it while
// most writes do not touch the stream's deadline.
func (ex *exchange) armWrite() {
	if ex.sendTO <= 0 {
		return
	}
	now := time.Now()
	if ex.wdl.Sub(now) > ex.sendTO-ex.sendTO/16 {
		return
	}
	d, ok := ex.rw.(interface{ SetWriteDeadline(time.Time) error })
	if !ok {
		return
	}
	ex.wdl = now.Add(ex.sendTO)
	d.SetWriteDeadline(ex.wdl)
	if ex.Aborted() {
		// Abort, which sets a past deadline after marking the exchange, raced with the new one.
		d.SetWriteDeadline(pastDeadline)
	}
}

// writeErr turns a write that hit the send timeout (rather than Abort's past deadline) into
// errSendTimeout.
func (ex *exchange) writeErr(err error) error {
	if err == nil || ex.sendTO <= 0 || ex.Aborted() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return errSendTimeout
}

// checkedBody is the request body as quic-go delivers it, checked against the body limit and
// for a length that contradicts content-length.
type checkedBody struct {
	ex       *exchange
	rc       io.ReadCloser
	max      int64         // 0: none
	readTO   time.Duration // Server.BodyReadTimeout; 0: none
	rdl      time.Time     // the read deadline set last
	n        int64
	err      error
	timedOut atomic.Bool // a read waited for longer than readTO
}

// errBodyReadTimeout is what a body read that waited longer than Server.BodyReadTimeout for
// the client's next bytes returns.
var errBodyReadTimeout = &fault.Error{Source: fault.Downstream, Kind: fault.ReadTimeout,
	Cause: errors.New("h3: no request body bytes received within the body read timeout")}

// armRead moves the read deadline to a full body read timeout from now once a sixteenth of
// it has passed (as armWrite does for writes), so a read that waits gets between 15/16 of
// the timeout and all of it while most reads do not touch the stream's deadline.
func (b *checkedBody) armRead() {
	now := time.Now()
	if b.rdl.Sub(now) > b.readTO-b.readTO/16 {
		return
	}
	d, ok := b.ex.rw.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return
	}
	b.rdl = now.Add(b.readTO)
	d.SetReadDeadline(b.rdl)
	if b.ex.Aborted() {
		// Abort, which sets a past deadline after marking the exchange, raced with the new one.
		d.SetReadDeadline(pastDeadline)
	}
}

// errBodyTooLarge is what reads of a body past Server.MaxBodySize return.
var errBodyTooLarge = &fault.Error{Source: fault.Downstream, Kind: fault.RequestTooLarge,
	Cause: errors.New("h3: request body larger than the limit")}

// quic-go's error for DATA beyond content-length; it has already reset the stream with
// H3_MESSAGE_ERROR then.
const msgTooMuchData = "peer sent too much data"

func (b *checkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.readTO > 0 {
		b.armRead()
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.max > 0 && b.n > b.max {
		// Not a byte past the limit reaches the handler; quic-go stops the client sending
		// once the handler returns.
		n -= int(b.n - b.max)
		b.n = b.max
		b.err = errBodyTooLarge
		return n, b.err
	}
	if err != nil && err != io.EOF {
		if b.readTO > 0 && !b.ex.Aborted() && errors.Is(err, os.ErrDeadlineExceeded) {
			// The client sent nothing for readTO: stop its sending (STOP_SENDING
			// H3_REQUEST_CANCELLED, from the body's Close) and fail the read; the handler may
			// still answer (408) if it sent nothing yet.
			b.timedOut.Store(true)
			b.err = errBodyReadTimeout
			b.rc.Close()
			return n, b.err
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || err.Error() == msgTooMuchData {
			// RFC 9114 section 4.1.2: a body whose length differs from content-length is
			// malformed: the stream is reset with H3_MESSAGE_ERROR.
			b.ex.malformed.Store(true)
			b.err = errMalformed
			return n, b.err
		}
	}
	return n, err
}

func (b *checkedBody) Close() error { return b.rc.Close() }

// resetBudget counts a connection's streams that the client canceled before their response,
// as a score that leaks a thousand units a second and that finished exchanges pay back; past
// resetLimit the connection is closed with H3_EXCESSIVE_LOAD. QUIC's stream limit already
// bounds the handlers running at once; this bounds the rate of work started and thrown away.
type resetBudget struct {
	score atomic.Int64
	mu    sync.Mutex
	at    time.Time
}

const (
	resetLimit = 10_000
	resetCost  = 5 // per canceled stream; a finished one pays back 1
)

// charge records a canceled stream and reports whether the connection is over budget.
func (b *resetBudget) charge(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	score := b.score.Load()
	if b.at.IsZero() {
		b.at = now
	}
	leak := int64(now.Sub(b.at) / time.Millisecond)
	score = max(score-leak, 0)
	b.at = b.at.Add(time.Duration(leak) * time.Millisecond)
	score += resetCost
	b.score.Store(score)
	return score > resetLimit
}

// credit pays back one unit for a finished exchange.
func (b *resetBudget) credit() {
	if b.score.Load() > 0 {
		b.score.Add(-1)
	}
}

// Conn describes the QUIC connection.
func (ex *exchange) Conn() *message.ConnInfo { return &ex.cd.info }

// bodilessMethod reports whether requests with method normally carry no body.
func bodilessMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return true
	}
	return false
}
