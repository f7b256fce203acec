package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// Client defaults, applied by [Dial] to ClientOptions fields left at zero.
const (
	// DefaultClientMaxResponseHeaderBytes bounds a response's HEADERS frame, 256 KiB.
	DefaultClientMaxResponseHeaderBytes = 256 << 10
	// DefaultClientIdleTimeout closes a connection after 60s without network activity.
	DefaultClientIdleTimeout = 60 * time.Second
	// DefaultClientMaxStreams is how many requests the pool runs at once on one connection
	// before it opens another, 100 (quic-go's and most servers' stream limit).
	DefaultClientMaxStreams = 100
	// DefaultClientStreamWindow is how far a response stream's receive window may grow, 4 MiB;
	// DefaultClientConnWindow the connection's, 16 MiB.
	DefaultClientStreamWindow = 4 << 20
	DefaultClientConnWindow   = 16 << 20
	// DefaultClientResponseHeaderTimeout bounds the wait for the response head, 60s.
	DefaultClientResponseHeaderTimeout = 60 * time.Second
)

// ClientOptions configure a [ClientConn]. The zero value uses the documented defaults.
type ClientOptions struct {
	// MaxResponseHeaderBytes bounds a response's HEADERS frame. Zero means
	// DefaultClientMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int
	// IdleTimeout closes the connection after this long without network activity. Zero means
	// DefaultClientIdleTimeout.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response head after the request was sent.
	// Zero means DefaultClientResponseHeaderTimeout; negative means no limit.
	ResponseHeaderTimeout time.Duration
	// MaxStreams is how many requests run on the connection at once before
	// CanTakeNewRequest reports false. Zero means DefaultClientMaxStreams.
	MaxStreams int
	// MaxStreamWindow and MaxConnWindow bound the receive windows. Zero means
	// DefaultClientStreamWindow and DefaultClientConnWindow.
	MaxStreamWindow, MaxConnWindow uint64
	// KeepAlivePeriod sends a PING after this long without traffic so idle pooled
	// connections stay open. Zero means half of IdleTimeout; negative disables it.
	KeepAlivePeriod time.Duration
	// QlogDir, when non-empty, writes a qlog file per connection into that directory.
	QlogDir string
}

// ClientConn is one HTTP/3 connection to an origin. Many RoundTrip calls may run on it at
// once; it is safe for concurrent use.
type ClientConn struct {
	qc         *quic.Conn
	cc         *http3.ClientConn
	maxStreams int
	maxHeader  int // bounds the interim (1xx) heads of one response together
	headerWait time.Duration

	mu        sync.Mutex
	active    int
	idleSince time.Time
	closing   bool // a GOAWAY or a failure to open a stream: take no new requests
	requests  atomic.Uint64
}

// Dial opens a QUIC connection to addr ("host:port") and starts HTTP/3 on it. tlsConf's
// NextProtos are replaced by "h3"; it must name the server (ServerName) unless addr's host
// does. The connection has its own UDP socket, closed with it. Errors are *fault.Error with
// Source fault.Upstream and Retry set (nothing was sent).
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, opts ClientOptions) (*ClientConn, error) {
	tc := tlsConf.Clone()
	tc.NextProtos = []string{http3.NextProtoH3}
	idle := orDefault(opts.IdleTimeout, DefaultClientIdleTimeout)
	ka := opts.KeepAlivePeriod
	switch {
	case ka == 0:
		ka = idle / 2
	case ka < 0:
		ka = 0
	}
	qconf := &quic.Config{
		MaxIdleTimeout:             idle,
		KeepAlivePeriod:            ka,
		MaxStreamReceiveWindow:     orDefault(opts.MaxStreamWindow, DefaultClientStreamWindow),
		MaxConnectionReceiveWindow: orDefault(opts.MaxConnWindow, DefaultClientConnWindow),
		MaxIncomingStreams:         -1, // servers do not open request streams
	}
	if dl, ok := ctx.Deadline(); ok {
		qconf.HandshakeIdleTimeout = max(time.Until(dl)/2, time.Millisecond)
	}
	if opts.QlogDir != "" {
		qconf.Tracer = qlogTracer(opts.QlogDir, slogDefault())
	}
	qc, err := quic.DialAddr(ctx, addr, tc, qconf)
	if err != nil {
		kind := fault.ConnectRefused
		if _, ok := errors.AsType[*quic.HandshakeTimeoutError](err); ok || errors.Is(err, context.DeadlineExceeded) {
			kind = fault.ConnectTimeout
		} else if _, ok := errors.AsType[*quic.TransportError](err); ok {
			kind = fault.TLSHandshake
		}
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &fault.Error{Source: fault.Upstream, Kind: fault.Canceled, Cause: err}
		}
		return nil, &fault.Error{Source: fault.Upstream, Kind: kind, Retry: true,
			Cause: fmt.Errorf("h3: dial %s: %w", addr, err)}
	}
	t := &http3.Transport{
		MaxResponseHeaderBytes: orDefault(opts.MaxResponseHeaderBytes, DefaultClientMaxResponseHeaderBytes),
		DisableCompression:     true,
	}
	hw := opts.ResponseHeaderTimeout
	switch {
	case hw == 0:
		hw = DefaultClientResponseHeaderTimeout
	case hw < 0:
		hw = 0
	}
	return &ClientConn{
		qc:         qc,
		cc:         t.NewClientConn(qc),
		maxStreams: orDefault(opts.MaxStreams, DefaultClientMaxStreams),
		maxHeader:  t.MaxResponseHeaderBytes,
		headerWait: hw,
		idleSince:  time.Now(),
	}, nil
}

// CanTakeNewRequest reports whether the connection is open, not going away and below
// MaxStreams, so a new request would start at once.
func (c *ClientConn) CanTakeNewRequest() bool {
	if c.qc.Context().Err() != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closing && c.active < c.maxStreams
}

// Idle reports whether no request is in flight and since when.
func (c *ClientConn) Idle() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active > 0 {
		return false, time.Time{}
	}
	return true, c.idleSince
}

// Requests reports the number of RoundTrip calls made on the connection.
func (c *ClientConn) Requests() uint64 { return c.requests.Load() }

// Close closes the connection at once, failing requests in flight.
func (c *ClientConn) Close() error {
	return c.qc.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

func (c *ClientConn) begin() {
	c.mu.Lock()
	c.active++
	c.mu.Unlock()
}

func (c *ClientConn) end(failed bool) {
	c.mu.Lock()
	c.active--
	if c.active == 0 {
		c.idleSince = time.Now()
	}
	if failed {
		c.closing = true
	}
	c.mu.Unlock()
}

// RoundTrip sends req on a new stream and returns the response once its head arrived. The
// response body streams; read it to io.EOF (which fills Trailer) and Close it. ctx bounds the
// whole exchange, body included: canceling it resets the stream. Errors are *fault.Error with
// Source fault.Upstream; Retry is set when the origin is known not to have processed the
// request (GOAWAY, H3_REQUEST_REJECTED, an unusable connection) and the body was not read.
//
// Informational (1xx) responses go to req.Interim when it is set; quic-go accepts at most 5 of
// them, and together they must fit MaxResponseHeaderBytes, or the round trip fails.
func (c *ClientConn) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	reused := c.requests.Add(1) > 1
	c.begin()
	ctx, cancel := context.WithCancel(ctx)
	ctx, relay := httpbridge.WithInterim(ctx, req, "h3", c.maxHeader)
	hr, body, err := newRequest(ctx, req)
	if err != nil {
		cancel()
		c.end(false)
		return nil, &fault.Error{Source: fault.Upstream, Kind: fault.InvalidRequest, Cause: err}
	}
	var timer *time.Timer
	if c.headerWait > 0 {
		timer = time.AfterFunc(c.headerWait, cancel)
	}
	res, err := c.cc.RoundTrip(hr)
	if timer != nil && !timer.Stop() && err != nil {
		err = fmt.Errorf("h3: no response head within %v: %w", c.headerWait, context.DeadlineExceeded)
	}
	err = relay.End(res, err)
	if err != nil {
		cancel()
		untouched := body == nil || body.BytesRead() == 0
		fe := upstreamError(err, reused, untouched)
		c.end(fe.Kind == fault.ConnectionClosed)
		return nil, fe
	}
	return newResponse(c, req, res, cancel), nil
}

// errTarget reports a request-target that cannot become :path.
var errTarget = errors.New("h3: request target is empty")

// newRequest converts req to the *http.Request quic-go sends.
func newRequest(ctx context.Context, req *message.Request) (*http.Request, *httpbridge.UploadBody, error) {
	u, ok := httpbridge.TargetURL("https", req)
	if !ok {
		return nil, nil, errTarget
	}
	h := make(http.Header, req.Header.Len()+1)
	httpbridge.AppendToMap(h, &req.Header, func(name string) bool {
		return message.EqualFold(name, "trailer") || message.EqualFold(name, "content-length")
	})
	hr := &http.Request{
		Method:     req.Method,
		URL:        u,
		Proto:      "HTTP/3.0",
		ProtoMajor: 3,
		Header:     h,
		Host:       req.Authority,
	}
	var body *httpbridge.UploadBody
	if req.Body != nil && req.ContentLength != 0 {
		hr.ContentLength = req.ContentLength
		if req.ContentLength > 0 {
			h["Content-Length"] = []string{fmt.Sprint(req.ContentLength)}
		}
		if req.Header.Has("trailer") || req.Trailer.Len() > 0 {
			hr.Trailer = make(http.Header)
			httpbridge.DeclareTrailers(hr.Trailer, &req.Header)
		}
		body = httpbridge.NewUploadBody(req, hr.Trailer)
		hr.Body = body
	}
	return hr.WithContext(ctx), body, nil
}

// newResponse converts quic-go's response to the neutral model.
func newResponse(c *ClientConn, req *message.Request, res *http.Response, cancel context.CancelFunc) *message.Response {
	resp := httpbridge.NewResponse(req, res, message.HTTP3)
	if req.Method == http.MethodHead || res.StatusCode == http.StatusNoContent ||
		res.StatusCode == http.StatusNotModified || res.ContentLength == 0 {
		res.Body.Close()
		cancel()
		c.end(false)
		return resp
	}
	resp.Body = &responseBody{
		ResponseBody: httpbridge.NewResponseBody(res, resp, upstreamBodyError),
		c:            c, res: res, cancel: cancel,
	}
	return resp
}

// upstreamBodyError classifies an error reading a response body: a *fault.Error from the
// upstream.
func upstreamBodyError(err error) error { return upstreamError(err, false, false) }

// responseBody streams the response body and fills the response's Trailer at EOF (see
// httpbridge.ResponseBody), and hands the stream back to the connection on Close. Errors are
// *fault.Error from the upstream.
type responseBody struct {
	httpbridge.ResponseBody
	c      *ClientConn
	res    *http.Response
	cancel context.CancelFunc
	closed atomic.Bool
}

// Close ends the stream: a body not read to EOF is canceled (H3_REQUEST_CANCELLED).
func (b *responseBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.res.Body.Close()
	b.cancel()
	b.c.end(false)
	return err
}
