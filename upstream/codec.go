package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/verge-edge/verge/message"
)

// codec is one client connection speaking HTTP/1.1 or HTTP/2, as the transport drives it. The
// http1 and h2 packages' ClientConn types are adapted to it (codec_http1.go, codec_h2.go), and
// tests substitute fakes.
type codec interface {
	// RoundTrip sends req and returns the response head with a streamed body.
	RoundTrip(ctx context.Context, req *message.Request) (*message.Response, error)
	// Close closes the connection.
	Close() error
}

// muxCodec is an HTTP/2 connection that many concurrent requests share.
type muxCodec interface {
	codec
	// CanTakeNewRequest reports whether a new stream may be opened now (the connection is
	// healthy, not going away, and below the peer's concurrent stream limit).
	CanTakeNewRequest() bool
	// Idle reports whether no stream is open and, if known, since when (zero when unknown,
	// e.g. before the first request).
	Idle() (idle bool, since time.Time)
}

// codecOptions are the settings a codec is built with; they are fixed per pool bucket.
type codecOptions struct {
	// ReadTimeout and WriteTimeout bound each read and write; zero means no limit.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// IdleTimeout is how long a conn may stay unused; zero means no limit.
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes limits an HTTP/1 response head or an HTTP/2 header list; zero
	// leaves the codec's default.
	MaxResponseHeaderBytes int
}

// noLimitNegative maps this package's resolved "no limit" (zero) to the codecs' (negative).
func noLimitNegative(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// codecFactory builds codecs over dialed connections.
type codecFactory struct {
	// http1 wraps c in an HTTP/1.1 client codec. release must be called exactly once per round
	// trip when the exchange is over, reusable only when the connection may carry another
	// request.
	http1 func(c net.Conn, o *codecOptions, release func(reusable bool)) codec
	// http2 starts an HTTP/2 client connection over c (the preface is sent by the codec).
	http2 func(c net.Conn, o *codecOptions) (muxCodec, error)
	// http3 dials a QUIC connection to addr and starts HTTP/3 on it; ctx bounds the handshake.
	// Errors are *fault.Error.
	http3 func(ctx context.Context, addr string, tc *tls.Config, o *codecOptions) (muxCodec, error)
}
