package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// Client defaults, applied by [NewClientConn] to ClientOptions fields left at zero.
const (
	// DefaultClientMaxHeaderListSize bounds a response's decoded header list, 256 KiB.
	DefaultClientMaxHeaderListSize = 256 << 10
	// DefaultClientMaxReadFrameSize is the largest frame payload accepted from the peer,
	// 64 KiB.
	DefaultClientMaxReadFrameSize = 64 << 10
	// DefaultClientMaxReceiveBufferPerStream is a stream's receive window: how much response
	// body the peer may send ahead of the reader, 1 MiB.
	DefaultClientMaxReceiveBufferPerStream = 1 << 20
	// DefaultClientMaxReceiveBufferPerConnection is the connection's receive window, 8 MiB.
	DefaultClientMaxReceiveBufferPerConnection = 8 << 20
	// DefaultResponseHeaderTimeout bounds the wait for the response head after the request
	// was written, 60s (upstream.Timeouts.Read's default).
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultClientIdleTimeout closes a connection without streams after 60s
	// (upstream.Timeouts.Idle's default).
	DefaultClientIdleTimeout = 60 * time.Second
	// DefaultClientReadIdleTimeout sends a PING after 30s without a frame from the peer.
	DefaultClientReadIdleTimeout = 30 * time.Second
	// DefaultClientWriteByteTimeout closes the connection when a write makes no progress for
	// 60s (upstream.Timeouts.Write's default).
	DefaultClientWriteByteTimeout = 60 * time.Second
)

// ClientOptions configure a [ClientConn]. The zero value uses the documented defaults.
type ClientOptions struct {
	// MaxHeaderListSize bounds the decoded size of a response's header list, advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE. Zero means DefaultClientMaxHeaderListSize.
	MaxHeaderListSize uint32
	// MaxReadFrameSize is the largest frame payload accepted, clipped to 16 KiB..16 MiB.
	// Zero means DefaultClientMaxReadFrameSize.
	MaxReadFrameSize uint32
	// MaxReceiveBufferPerStream is each stream's flow-control window. Zero or negative means
	// DefaultClientMaxReceiveBufferPerStream.
	MaxReceiveBufferPerStream int32
	// MaxReceiveBufferPerConnection is the connection's flow-control window. Zero or
	// negative means DefaultClientMaxReceiveBufferPerConnection.
	MaxReceiveBufferPerConnection int32
	// ResponseHeaderTimeout bounds the wait for the response head once the request is
	// written. Zero means DefaultResponseHeaderTimeout; negative means no limit.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout closes the connection after this long without streams. Zero means
	// DefaultClientIdleTimeout; negative means never.
	IdleTimeout time.Duration
	// ReadIdleTimeout sends a PING after this long without a frame from the peer, to detect
	// a dead connection. Zero means DefaultClientReadIdleTimeout; negative disables it.
	ReadIdleTimeout time.Duration
	// PingTimeout closes the connection when a health-check PING is not answered within it.
	// Zero or negative means 15s.
	PingTimeout time.Duration
	// WriteByteTimeout closes the connection when pending data makes no progress for this
	// long. Zero means DefaultClientWriteByteTimeout; negative means no limit.
	WriteByteTimeout time.Duration
	// CountError, when non-nil, is called for each protocol error x/net/http2 detects on
	// the connection, with a short word-character name, for metrics.
	CountError func(errType string)
}

// ClientConn is one HTTP/2 connection to an origin. Many RoundTrip calls may run on it at
// once; it is safe for concurrent use.
type ClientConn struct {
	cc       *http2.ClientConn
	conn     net.Conn
	scheme   string
	requests atomic.Uint64
	// maxHeaderList bounds the interim (1xx) heads of one response together.
	maxHeaderList int
}

// ConnState describes a ClientConn for a pool.
type ConnState struct {
	// Closed reports that the connection is closed.
	Closed bool
	// Closing reports that the connection takes no new requests: it got or sent GOAWAY, or
	// is shutting down; streams in flight may still complete.
	Closing bool
	// ActiveStreams is the number of open streams (including resets not yet confirmed).
	ActiveStreams int
	// PendingRequests is the number of RoundTrip calls waiting for a stream slot.
	PendingRequests int
	// MaxConcurrentStreams is the peer's SETTINGS_MAX_CONCURRENT_STREAMS, 0 until its
	// SETTINGS arrived.
	MaxConcurrentStreams uint32
	// IdleSince is when the last stream ended, zero while streams are open or before the
	// first request.
	IdleSince time.Time
	// Requests is the number of RoundTrip calls made on the connection.
	Requests uint64
}

// NewClientConn starts HTTP/2 on c, an already-dialed connection: a *tls.Conn that
// negotiated "h2" by ALPN, or a plain-text connection to a peer that speaks h2c with prior
// knowledge. It writes the client preface and SETTINGS and returns without waiting for the
// peer's. The ClientConn owns c from then on; a TLS connection that negotiated another
// protocol is closed and an error returned.
func NewClientConn(c net.Conn, opts ClientOptions) (*ClientConn, error) {
	scheme := "http"
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		scheme = "https"
		if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
			c.Close()
			return nil, fault.New(fault.Upstream, fault.TLSHandshake,
				fmt.Errorf("h2: peer negotiated ALPN protocol %q, not %q", p, http2.NextProtoTLS))
		}
	}
	t1 := &http.Transport{
		DisableCompression:     true,
		MaxResponseHeaderBytes: int64(orDefault(opts.MaxHeaderListSize, DefaultClientMaxHeaderListSize)),
		ResponseHeaderTimeout:  duration(opts.ResponseHeaderTimeout, DefaultResponseHeaderTimeout),
		IdleConnTimeout:        duration(opts.IdleTimeout, DefaultClientIdleTimeout),
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     positive(opts.MaxReceiveBufferPerStream, DefaultClientMaxReceiveBufferPerStream),
			MaxReceiveBufferPerConnection: positive(opts.MaxReceiveBufferPerConnection, DefaultClientMaxReceiveBufferPerConnection),
		},
	}
	t2, err := http2.ConfigureTransports(t1)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("h2: configure transport: %w", err)
	}
	t2.DisableCompression = true
	t2.MaxHeaderListSize = uint32(t1.MaxResponseHeaderBytes)
	t2.MaxReadFrameSize = orDefault(opts.MaxReadFrameSize, DefaultClientMaxReadFrameSize)
	t2.IdleConnTimeout = t1.IdleConnTimeout
	t2.ReadIdleTimeout = duration(opts.ReadIdleTimeout, DefaultClientReadIdleTimeout)
	t2.PingTimeout = opts.PingTimeout
	if t2.PingTimeout <= 0 {
		t2.PingTimeout = DefaultPingTimeout
	}
	t2.WriteByteTimeout = duration(opts.WriteByteTimeout, DefaultClientWriteByteTimeout)
	t2.CountError = opts.CountError
	cc, err := t2.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, upstreamError(fmt.Errorf("h2: start connection: %w", err), false, false)
	}
	return &ClientConn{cc: cc, conn: c, scheme: scheme, maxHeaderList: int(t2.MaxHeaderListSize)}, nil
}

func positive(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}

// CanTakeNewRequest reports whether the connection is usable and below the peer's stream
// limit, so a new request would start at once.
func (c *ClientConn) CanTakeNewRequest() bool { return c.cc.CanTakeNewRequest() }

// State reports the connection's state for a pool.
func (c *ClientConn) State() ConnState {
	s := c.cc.State()
	return ConnState{
		Closed:               s.Closed,
		Closing:              s.Closing,
		ActiveStreams:        s.StreamsActive,
		PendingRequests:      s.StreamsPending,
		MaxConcurrentStreams: s.MaxConcurrentStreams,
		IdleSince:            s.LastIdle,
		Requests:             c.requests.Load(),
	}
}

// Ping sends a PING and waits for its acknowledgement or ctx's end.
func (c *ClientConn) Ping(ctx context.Context) error {
	if err := c.cc.Ping(ctx); err != nil {
		return upstreamError(err, true, false)
	}
	return nil
}

// Shutdown sends GOAWAY, lets streams in flight finish and then closes the connection, or
// closes it at once when ctx ends first.
func (c *ClientConn) Shutdown(ctx context.Context) error { return c.cc.Shutdown(ctx) }

// Close closes the connection at once, failing streams in flight.
func (c *ClientConn) Close() error { return c.cc.Close() }

// RoundTrip sends req on a new stream and returns the response once its head arrived. The
// response body streams; read it to io.EOF (which fills Trailer) and Close it. ctx bounds
// the whole exchange, body included: canceling it resets the stream. Errors are
// *fault.Error with Source fault.Upstream; Retry is set when the server is known not to have
// processed the request (the connection was unusable, GOAWAY excluded the stream, or the
// stream was refused) and the request body, if any, was not read yet.
//
// Informational (1xx) responses go to req.Interim when it is set, from the connection's
// reader goroutine; at most httpbridge.MaxInterim of them, within the header list limit
// together, or the round trip fails.
func (c *ClientConn) RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error) {
	reused := c.requests.Add(1) > 1
	ctx, relay := httpbridge.WithInterim(ctx, req, "h2", c.maxHeaderList)
	hr, body, err := c.newRequest(ctx, req)
	if err != nil {
		return nil, &fault.Error{Source: fault.Upstream, Kind: fault.InvalidRequest, Cause: err}
	}
	res, err := c.cc.RoundTrip(hr)
	if err = relay.End(res, err); err != nil {
		untouched := body == nil || body.BytesRead() == 0
		return nil, upstreamError(err, reused, untouched)
	}
	return newResponse(req, res), nil
}

// errTarget reports a request-target that cannot become :path.
var errTarget = errors.New("h2: request target is empty")

// newRequest converts req to the *http.Request x/net/http2 sends.
func (c *ClientConn) newRequest(ctx context.Context, req *message.Request) (*http.Request, *httpbridge.UploadBody, error) {
	scheme := req.Scheme
	if scheme == "" {
		scheme = c.scheme
	}
	u, ok := httpbridge.TargetURL(scheme, req)
	if !ok {
		return nil, nil, errTarget
	}
	h := make(http.Header, req.Header.Len()+1)
	appendRequestHeader(h, &req.Header)
	if _, ok := h["user-agent"]; !ok {
		// A nil entry stops x/net/http2 from adding its own User-Agent.
		h["user-agent"] = nil
	}
	hr := &http.Request{
		Method:     req.Method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       req.Authority,
	}
	var body *httpbridge.UploadBody
	if req.Body != nil && req.ContentLength != 0 {
		hr.ContentLength = req.ContentLength
		if req.ContentLength < 0 || req.Header.Has("trailer") || req.Trailer.Len() > 0 {
			// Trailers are announced from these keys and sent from the map after the body's
			// EOF; a non-nil map makes x/net/http2 wait for them before END_STREAM.
			hr.Trailer = make(http.Header)
			httpbridge.DeclareTrailers(hr.Trailer, &req.Header)
		}
		body = httpbridge.NewUploadBody(req, hr.Trailer)
		hr.Body = body
	}
	return hr.WithContext(ctx), body, nil
}
