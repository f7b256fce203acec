package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Exchange states.
const (
	stateIdle     uint32 = iota // no response head yet
	stateHead                   // final head written, body may follow
	stateFinished               // Finish called
	stateAborted                // Abort called or a write failed for good
)

var (
	errNoHead       = errors.New("h2: response body or finish before WriteHeader")
	errHeadWritten  = errors.New("h2: response head already written")
	errFinished     = errors.New("h2: exchange already finished")
	errAborted      = errors.New("h2: exchange aborted")
	errStatus       = errors.New("h2: invalid response status")
	errSwitchProtos = errors.New("h2: 101 Switching Protocols does not exist in HTTP/2")
)

// connHandler is the http.Handler x/net/http2 calls for each stream of one connection.
type connHandler struct {
	st   *serverState
	info *message.ConnInfo
}

// ServeHTTP converts the stream into an exchange, runs the Server's Handler and resets the
// stream when the handler did not finish the exchange.
func (h *connHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fn := h.st.srv.Handler
	if fn == nil {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusNotFound)
		return
	}
	// The exchange is not pooled: x/net/http2's client side may still read or close a
	// request body that points into it after the round trip (and this handler) ended, as
	// http.RoundTripper permits, so its memory must not be reused.
	ex := new(exchange)
	ex.init(h, w, r)
	if ex.run(fn) {
		// x/net/http2 recovers this value without logging and resets the stream with
		// INTERNAL_ERROR; it never reaches a caller.
		panic(http.ErrAbortHandler)
	}
}

// exchange is one HTTP/2 stream presented as a message.ServerExchange.
type exchange struct {
	h     *connHandler
	w     http.ResponseWriter
	r     *http.Request
	req   message.Request
	body  requestBody
	state atomic.Uint32
	keys  []string // scratch for sorting header names
}

var _ message.ServerExchange = (*exchange)(nil)

func (ex *exchange) init(h *connHandler, w http.ResponseWriter, r *http.Request) {
	ex.h, ex.w, ex.r = h, w, r
	ex.state.Store(stateIdle)
	req := &ex.req
	req.Method = r.Method
	req.Target = r.RequestURI
	req.Scheme = "http"
	if r.TLS != nil || h.info.TLS != nil {
		req.Scheme = "https"
	}
	req.Authority = r.Host
	req.Proto = message.HTTP2
	ex.keys = fillFromMap(&req.Header, r.Header, ex.keys)
	if len(r.Trailer) > 0 {
		// x/net/http2 moved the Trailer field into r.Trailer's keys; restore it so the
		// declaration reaches the upstream.
		req.Header.Add("trailer", ex.trailerNames(r.Trailer))
	}
	req.ContentLength = r.ContentLength
	if r.ContentLength != 0 {
		ex.body = requestBody{ex: ex, rc: r.Body}
		req.Body = &ex.body
	}
}

// trailerNames lists the declared trailer names, lower case and sorted.
func (ex *exchange) trailerNames(m http.Header) string {
	keys := ex.keys[:0]
	for k := range m {
		keys = append(keys, lowerName(k))
	}
	slices.Sort(keys)
	s := strings.Join(keys, ", ")
	clear(keys)
	ex.keys = keys[:0]
	return s
}

// run calls fn and reports whether the stream must be reset: fn panicked, aborted, or
// returned without finishing.
func (ex *exchange) run(fn func(message.ServerExchange)) (reset bool) {
	defer func() {
		if p := recover(); p != nil {
			reset = true
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				ex.h.st.logger.Error("h2: handler panic", "remote", ex.r.RemoteAddr,
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
	ex.h.st.logger.Debug("h2: handler returned without Finish; resetting stream",
		"remote", ex.r.RemoteAddr, "path", ex.req.Target)
	return true
}

// Request returns the downstream request.
func (ex *exchange) Request() *message.Request { return &ex.req }

// Conn describes the connection.
func (ex *exchange) Conn() *message.ConnInfo { return ex.h.info }

// Context returns the stream's context, canceled when the client resets the stream, the
// connection ends or the handler returns. It is an optional capability beyond
// message.ServerExchange.
func (ex *exchange) Context() context.Context { return ex.r.Context() }

// WriteHeader records the response head; it is sent with the first body bytes, on Flush, or
// on Finish (so a head-only response, such as a gRPC trailers-only response, is one HEADERS
// frame with END_STREAM). Connection-specific fields are dropped (RFC 9113 section 8.2.2).
// Informational heads (1xx except 101) are sent at once and may be followed by the final one.
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
	appendToMap(h, &resp.Header)
	if status < 200 {
		ex.w.WriteHeader(status)
		clear(h)
		return nil
	}
	delete(h, "Content-Length")
	if resp.ContentLength >= 0 && status != http.StatusNoContent {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	// A nil entry stops x/net/http2 from inventing a Content-Type (by sniffing the body) or
	// a Date: the proxy forwards what the response has.
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
	if f, ok := ex.w.(interface{ FlushError() error }); ok {
		if err := f.FlushError(); err != nil {
			return downstreamError(err)
		}
		return nil
	}
	ex.w.(http.Flusher).Flush()
	return nil
}

// Finish ends the response. Trailer fields are sent in a final HEADERS frame whether or not
// the head announced them; fields not allowed in trailers (RFC 9110 section 6.5.1, such as
// Content-Length or Host) are dropped. The stream ends when the Handler returns.
func (ex *exchange) Finish(trailer *message.Header) error {
	if err := ex.stateErr(); err != nil {
		return err
	}
	if trailer != nil && trailer.Len() > 0 {
		// Copied: x/net/http2 writes trailers after the handler returns (see appendToMap).
		h := ex.w.Header()
		var a arena
		a.grow(trailer.Fields())
		for _, f := range trailer.Fields() {
			k := canonicalName(a.str(f.Name))
			if isConnectionSpecific(k) || !httpguts.ValidTrailerHeader(k) {
				continue
			}
			k = http.TrailerPrefix + k
			h[k] = append(h[k], a.str(f.Value))
		}
	}
	ex.state.Store(stateFinished)
	return nil
}

// pastDeadline is a write deadline in the past, which makes x/net/http2 reset the stream.
var pastDeadline = time.Unix(1, 0)

// Abort resets the stream with RST_STREAM INTERNAL_ERROR at once. It may be called from any
// goroutine; later calls on the exchange fail.
func (ex *exchange) Abort(err error) {
	if ex.state.Swap(stateAborted) == stateAborted {
		return
	}
	if d, ok := ex.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(pastDeadline)
	}
	if l := ex.h.st.logger; l.Enabled(context.Background(), -4) {
		l.Debug("h2: stream aborted", "remote", ex.r.RemoteAddr, "path", ex.req.Target, "err", err)
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

// downstreamError classifies an error of the client's stream.
func downstreamError(err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	kind := fault.Unknown
	switch msg := err.Error(); {
	case errors.Is(err, context.Canceled), isStreamCode(err, 0x8): // CANCEL
		kind = fault.Canceled
	case msg == "client disconnected", msg == "http2: stream closed",
		strings.HasSuffix(msg, "http2: request body closed due to handler exiting"):
		kind = fault.Canceled
	case isStreamCode(err, 0x1) || isStreamCode(err, 0x3) || isStreamCode(err, 0x6):
		// PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR: the client's framing is broken.
		kind = fault.InvalidRequest
	default:
		fe = fault.Classify(fault.Downstream, err)
		if fe.Kind == fault.Unknown {
			fe.Kind = fault.ConnectionClosed
		}
		return fe
	}
	return &fault.Error{Source: fault.Downstream, Kind: kind, Cause: err}
}
