package h3

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/verge-edge/verge/message"
)

// Exchange states.
const (
	stateIdle     uint32 = iota // no response head yet
	stateHead                   // final head written, body may follow
	stateFinished               // Finish called
	stateAborted                // Abort called
)

var (
	errNoHead       = errors.New("h3: response body or finish before WriteHeader")
	errHeadWritten  = errors.New("h3: response head already written")
	errFinished     = errors.New("h3: exchange already finished")
	errAborted      = errors.New("h3: exchange aborted")
	errStatus       = errors.New("h3: invalid response status")
	errSwitchProtos = errors.New("h3: 101 Switching Protocols does not exist in HTTP/3")
)

// tooEarlyBody is the body of the 425 answer to a non-idempotent request in 0-RTT data.
var tooEarlyBody = []byte("425 Too Early: retry this request after the handshake\n")

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
	if early && !idempotent(r.Method) {
		// RFC 8470 section 5.2: the client retries once the handshake is complete.
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(tooEarlyBody))}
		w.WriteHeader(http.StatusTooEarly)
		w.Write(tooEarlyBody)
		return
	}
	fn := *st.srv.handler.Load()
	if fn == nil {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ex := &exchange{st: st, cd: cd, w: w, r: r}
	ex.init(early)
	if ex.run(fn) {
		// quic-go's server recovers this value without logging and resets the stream.
		panic(http.ErrAbortHandler)
	}
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

// exchange is one HTTP/3 request stream presented as a message.ServerExchange.
type exchange struct {
	st    *serverState
	cd    *connData
	w     http.ResponseWriter
	r     *http.Request
	req   message.Request
	body  requestBody
	state atomic.Uint32
	keys  []string
}

var _ message.ServerExchange = (*exchange)(nil)

func (ex *exchange) init(early bool) {
	r := ex.r
	req := &ex.req
	req.Method = r.Method
	req.Target = r.RequestURI
	req.Scheme = "https"
	req.Authority = r.Host
	req.Proto = message.HTTP3
	ex.keys = fillFromMap(&req.Header, r.Header, ex.keys)
	if len(r.Trailer) > 0 {
		names := ""
		for k := range r.Trailer {
			if names != "" {
				names += ", "
			}
			names += lowerName(k)
		}
		req.Header.Add("trailer", names)
	}
	if early && !req.Header.Has("early-data") {
		req.Header.Add("early-data", "1")
	}
	req.ContentLength = r.ContentLength
	// quic-go cannot tell whether the stream ended with its HEADERS frame without blocking on
	// a read, so a request without Content-Length counts as bodiless when its method usually
	// has no body, and as a streamed body of unknown length otherwise.
	if r.ContentLength == 0 || r.ContentLength < 0 && bodilessMethod(r.Method) {
		req.ContentLength = 0
		return
	}
	ex.body = requestBody{ex: ex, rc: r.Body}
	req.Body = &ex.body
}

// bodilessMethod reports whether requests with method normally carry no body.
func bodilessMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return true
	}
	return false
}

// run calls fn and reports whether the stream must be reset.
func (ex *exchange) run(fn func(message.ServerExchange)) (reset bool) {
	defer func() {
		if p := recover(); p != nil {
			reset = true
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				ex.st.logger.Error("h3: handler panic", "remote", ex.r.RemoteAddr,
					"path", ex.req.Target, "panic", p, "stack", string(buf))
			}
		}
	}()
	fn(ex)
	switch ex.state.Load() {
	case stateFinished:
		return false
	case stateAborted:
		return true
	}
	ex.st.logger.Debug("h3: handler returned without Finish; resetting stream",
		"remote", ex.r.RemoteAddr, "path", ex.req.Target)
	return true
}

// Request returns the downstream request.
func (ex *exchange) Request() *message.Request { return &ex.req }

// Conn describes the QUIC connection.
func (ex *exchange) Conn() *message.ConnInfo { return &ex.cd.info }

// Context is canceled when the client resets the stream, the connection ends or the handler
// returns.
func (ex *exchange) Context() context.Context { return ex.r.Context() }

// WriteHeader records the response head; it is sent with the first body bytes, on Flush or on
// Finish. Connection-specific fields are dropped (RFC 9114 section 4.2). Informational heads
// (1xx except 101) are sent at once.
func (ex *exchange) WriteHeader(resp *message.Response) error {
	switch ex.state.Load() {
	case stateIdle:
	case stateAborted:
		return errAborted
	default:
		return errHeadWritten
	}
	status := resp.Status
	if status < 100 || status > 999 {
		return errStatus
	}
	if status == http.StatusSwitchingProtocols {
		return errSwitchProtos
	}
	h := ex.w.Header()
	appendToMap(h, &resp.Header, nil)
	if status < 200 {
		ex.w.WriteHeader(status)
		clear(h)
		return nil
	}
	delete(h, "Content-Length")
	if resp.ContentLength >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	// Nil entries stop quic-go from sniffing a Content-Type or adding a Date: the proxy
	// forwards what the response has.
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = nil
	}
	ex.w.WriteHeader(status)
	ex.state.Store(stateHead)
	return nil
}

func (ex *exchange) stateErr() error {
	switch ex.state.Load() {
	case stateIdle:
		return errNoHead
	case stateFinished:
		return errFinished
	case stateAborted:
		return errAborted
	}
	return nil
}

// Write sends body bytes, blocking while the stream's flow-control window is closed.
func (ex *exchange) Write(p []byte) (int, error) {
	if err := ex.stateErr(); err != nil {
		return 0, err
	}
	n, err := ex.w.Write(p)
	if err != nil {
		return n, downstreamError(err)
	}
	return n, nil
}

// Flush sends the response head, if not yet sent, and buffered body bytes.
func (ex *exchange) Flush() error {
	if err := ex.stateErr(); err != nil {
		return err
	}
	if err := ex.w.(interface{ FlushError() error }).FlushError(); err != nil {
		return downstreamError(err)
	}
	return nil
}

// Finish ends the response. Trailer fields are sent in a final HEADERS frame; fields not
// allowed in trailers (RFC 9110 section 6.5.1) are dropped. The stream ends when the handler
// returns.
func (ex *exchange) Finish(trailer *message.Header) error {
	if err := ex.stateErr(); err != nil {
		return err
	}
	if trailer != nil && trailer.Len() > 0 {
		h := ex.w.Header()
		for _, f := range trailer.Fields() {
			k := http.CanonicalHeaderKey(f.Name)
			if isConnectionSpecific(k) || !httpguts.ValidTrailerHeader(k) {
				continue
			}
			k = http.TrailerPrefix + k // a new string: no alias of f.Name remains
			h[k] = append(h[k], strings.Clone(f.Value))
		}
	}
	ex.state.Store(stateFinished)
	return nil
}

// pastDeadline is a deadline in the past: blocked reads and writes of the stream fail at once.
var pastDeadline = time.Unix(1, 0)

// Abort resets the stream (H3_INTERNAL_ERROR) once the handler returns, and makes blocked and
// later reads and writes fail at once. It may be called from any goroutine.
func (ex *exchange) Abort(err error) {
	if ex.state.Swap(stateAborted) == stateAborted {
		return
	}
	if d, ok := ex.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(pastDeadline)
	}
	if d, ok := ex.w.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(pastDeadline)
	}
	if l := ex.st.logger; l.Enabled(context.Background(), -4) {
		l.Debug("h3: stream aborted", "remote", ex.r.RemoteAddr, "path", ex.req.Target, "err", err)
	}
}

// requestBody streams the request body and fills the request's Trailer at EOF.
type requestBody struct {
	ex   *exchange
	rc   io.ReadCloser
	done bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.rc == nil {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		if !b.done {
			b.done = true
			ex := b.ex
			ex.keys = fillFromMap(&ex.req.Trailer, ex.r.Trailer, ex.keys)
		}
		return n, io.EOF
	}
	return n, downstreamError(err)
}
