package httpbridge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
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

// ProtocolConfig describes what differs between the adapters that use Exchange.
type ProtocolConfig struct {
	// Name prefixes errors and log messages, such as "h2". Required.
	Name string
	// Version names the protocol in errors, such as "HTTP/2". Required.
	Version string
	// DownstreamError classifies an error of the client's stream returned by the
	// ResponseWriter's Write or FlushError, or by the request body. Required.
	DownstreamError func(error) error
	// OmitLengthOn304 leaves Content-Length out of 304 responses as well as 204 ones.
	OmitLengthOn304 bool
	// AbortReads makes Abort also set a past read deadline, so blocked reads of the request
	// body fail at once.
	AbortReads bool
}

// Protocol is a ProtocolConfig with its errors built; make one per adapter with NewProtocol.
type Protocol struct {
	cfg             ProtocolConfig
	errNoHead       error
	errHeadWritten  error
	errFinished     error
	errAborted      error
	errStatus       error
	errSwitchProtos error
	msgPanic        string
	msgUnfinished   string
	msgAborted      string
}

// NewProtocol returns the Protocol for cfg.
func NewProtocol(cfg ProtocolConfig) *Protocol {
	n := cfg.Name
	return &Protocol{
		cfg:             cfg,
		errNoHead:       errors.New(n + ": response body or finish before WriteHeader"),
		errHeadWritten:  errors.New(n + ": response head already written"),
		errFinished:     errors.New(n + ": exchange already finished"),
		errAborted:      errors.New(n + ": exchange aborted"),
		errStatus:       errors.New(n + ": invalid response status"),
		errSwitchProtos: errors.New(n + ": 101 Switching Protocols does not exist in " + cfg.Version),
		msgPanic:        n + ": handler panic",
		msgUnfinished:   n + ": handler returned without Finish; resetting stream",
		msgAborted:      n + ": stream aborted",
	}
}

// Exchange is the core of a message.ServerExchange over one http.ResponseWriter and
// *http.Request pair. An adapter embeds it and adds Conn. The zero value is not
// usable: call Init first.
type Exchange struct {
	w       http.ResponseWriter
	r       *http.Request
	p       *Protocol
	logger  *slog.Logger
	req     message.Request
	body    requestBody
	state   atomic.Uint32
	keys    []string // scratch for sorting header names
	sent100 bool     // a 100 Continue went out through WriteInterim
}

// Init converts r into the exchange's request: method, target, scheme, authority, proto,
// header (lower-case names, sorted) and, when r declares trailers, a Trailer field listing
// their names (lower case, sorted). The request gets no body until AttachBody. logger must
// not be nil.
func (ex *Exchange) Init(p *Protocol, logger *slog.Logger, w http.ResponseWriter, r *http.Request,
	scheme, proto string) {
	ex.p, ex.logger, ex.w, ex.r = p, logger, w, r
	ex.state.Store(stateIdle)
	ex.sent100 = false
	req := &ex.req
	req.Method = r.Method
	req.Target = r.RequestURI
	req.Scheme = scheme
	req.Authority = r.Host
	req.Proto = proto
	ex.keys = FillFromMap(&req.Header, r.Header, ex.keys)
	if len(r.Trailer) > 0 {
		// The libraries move the Trailer field into r.Trailer's keys; restore it so the
		// declaration reaches the upstream.
		req.Header.Add("trailer", ex.trailerNames(r.Trailer))
	}
	req.ContentLength = r.ContentLength
}

// AttachBody makes the request body stream from the *http.Request's body; the request's
// Trailer is filled at its EOF.
func (ex *Exchange) AttachBody() {
	ex.body = requestBody{ex: ex, rc: ex.r.Body}
	ex.req.Body = &ex.body
}

// trailerNames lists the declared trailer names, lower case and sorted.
func (ex *Exchange) trailerNames(m http.Header) string {
	keys := ex.keys[:0]
	for k := range m {
		keys = append(keys, LowerName(k))
	}
	slices.Sort(keys)
	s := strings.Join(keys, ", ")
	clear(keys)
	ex.keys = keys[:0]
	return s
}

// Run calls fn with outer (the adapter's exchange embedding ex) and reports whether the
// stream must be reset: fn panicked, aborted, or returned without finishing.
func (ex *Exchange) Run(outer message.ServerExchange, fn func(message.ServerExchange)) (reset bool) {
	defer func() {
		if p := recover(); p != nil {
			reset = true
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				ex.logger.Error(ex.p.msgPanic, "remote", ex.r.RemoteAddr,
					"path", ex.req.Target, "panic", p, "stack", string(buf))
			}
		}
	}()
	fn(outer)
	switch ex.state.Load() {
	case stateFinished:
		return false
	case stateAborted:
		return true
	}
	ex.logger.Debug(ex.p.msgUnfinished, "remote", ex.r.RemoteAddr, "path", ex.req.Target)
	return true
}

// Request returns the downstream request.
func (ex *Exchange) Request() *message.Request { return &ex.req }

// Context returns the stream's context, canceled when the client resets the stream, the
// connection ends or the handler returns. It is an optional capability beyond
// message.ServerExchange.
func (ex *Exchange) Context() context.Context { return ex.r.Context() }

// WriteHeader records the response head; it is sent with the first body bytes, on Flush, or
// on Finish. Connection-specific fields are dropped. Informational heads (1xx except 101) are
// sent at once and may be followed by the final one.
func (ex *Exchange) WriteHeader(resp *message.Response) error {
	if err := ex.headErr(); err != nil {
		return err
	}
	status := resp.Status
	if status < 100 || status > 999 {
		return ex.p.errStatus
	}
	if status == http.StatusSwitchingProtocols {
		return ex.p.errSwitchProtos
	}
	if status < 200 {
		return ex.WriteInterim(status, &resp.Header)
	}
	h := ex.w.Header()
	AppendToMap(h, &resp.Header, nil)
	delete(h, "Content-Length")
	if resp.ContentLength >= 0 && status != http.StatusNoContent &&
		!(ex.p.cfg.OmitLengthOn304 && status == http.StatusNotModified) {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	// Nil entries stop the library from inventing a Content-Type (by sniffing the body) or a
	// Date: the proxy forwards what the response has.
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

// WriteInterim sends an informational response head (100-199 except 101) with the fields of h
// (nil means none) at once; connection-specific fields are dropped. It fails once the final
// head was recorded, and sends a 100 Continue at most once. It may run on another goroutine
// than the handler's while the handler waits for an upstream, never concurrently with the
// handler's own use of the exchange.
func (ex *Exchange) WriteInterim(status int, h *message.Header) error {
	if status < 100 || status > 199 || status == http.StatusSwitchingProtocols {
		return ex.p.errStatus
	}
	if err := ex.headErr(); err != nil {
		return err
	}
	if status == http.StatusContinue {
		if ex.sent100 {
			return nil
		}
		ex.sent100 = true
	}
	m := ex.w.Header()
	if h != nil {
		AppendToMap(m, h, nil)
	}
	ex.w.WriteHeader(status)
	clear(m)
	return nil
}

// headErr says why no response head can be written any more, if so.
func (ex *Exchange) headErr() error {
	switch ex.state.Load() {
	case stateIdle:
		return nil
	case stateAborted:
		return ex.p.errAborted
	}
	return ex.p.errHeadWritten
}

func (ex *Exchange) stateErr() error {
	switch ex.state.Load() {
	case stateIdle:
		return ex.p.errNoHead
	case stateFinished:
		return ex.p.errFinished
	case stateAborted:
		return ex.p.errAborted
	}
	return nil
}

// Write sends body bytes, blocking while the stream's flow-control window is closed.
func (ex *Exchange) Write(p []byte) (int, error) {
	if err := ex.stateErr(); err != nil {
		return 0, err
	}
	n, err := ex.w.Write(p)
	if err != nil {
		return n, ex.p.cfg.DownstreamError(err)
	}
	return n, nil
}

// Flush sends the response head, if not yet sent, and buffered body bytes.
func (ex *Exchange) Flush() error {
	if err := ex.stateErr(); err != nil {
		return err
	}
	if f, ok := ex.w.(interface{ FlushError() error }); ok {
		if err := f.FlushError(); err != nil {
			return ex.p.cfg.DownstreamError(err)
		}
		return nil
	}
	ex.w.(http.Flusher).Flush()
	return nil
}

// Finish ends the response. Trailer fields are sent in a final HEADERS frame whether or not
// the head announced them; fields not allowed in trailers (RFC 9110 section 6.5.1, such as
// Content-Length or Host) are dropped. The stream ends when the handler returns.
func (ex *Exchange) Finish(trailer *message.Header) error {
	if err := ex.stateErr(); err != nil {
		return err
	}
	if trailer != nil && trailer.Len() > 0 {
		// Copied: trailers are written after the handler returns (see AppendToMap).
		h := ex.w.Header()
		var a arena
		a.grow(trailer.Fields())
		for _, f := range trailer.Fields() {
			k := CanonicalName(a.str(f.Name))
			if message.ConnectionSpecific(k) || !httpguts.ValidTrailerHeader(k) {
				continue
			}
			k = http.TrailerPrefix + k
			h[k] = append(h[k], a.str(f.Value))
		}
	}
	ex.state.Store(stateFinished)
	return nil
}

// pastDeadline is a deadline in the past: blocked reads and writes of the stream fail at once.
var pastDeadline = time.Unix(1, 0)

// Abort resets the stream: it sets a past write deadline (and a past read deadline when the
// Protocol says AbortReads). It may be called from any goroutine; later calls on the exchange
// fail.
func (ex *Exchange) Abort(err error) {
	if ex.state.Swap(stateAborted) == stateAborted {
		return
	}
	if d, ok := ex.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(pastDeadline)
	}
	if ex.p.cfg.AbortReads {
		if d, ok := ex.w.(interface{ SetReadDeadline(time.Time) error }); ok {
			d.SetReadDeadline(pastDeadline)
		}
	}
	if l := ex.logger; l.Enabled(context.Background(), -4) {
		l.Debug(ex.p.msgAborted, "remote", ex.r.RemoteAddr, "path", ex.req.Target, "err", err)
	}
}

// Aborted reports whether Abort was called.
func (ex *Exchange) Aborted() bool { return ex.state.Load() == stateAborted }

// requestBody streams the request body and fills the request's Trailer at EOF.
type requestBody struct {
	ex   *Exchange
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
			ex.keys = FillFromMap(&ex.req.Trailer, ex.r.Trailer, ex.keys)
		}
		return n, io.EOF
	}
	return n, b.ex.p.cfg.DownstreamError(err)
}
