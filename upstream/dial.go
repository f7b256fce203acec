package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/verge-edge/verge/fault"
)

// ALPN protocol identifiers (RFC 7301, RFC 9113 section 3.2).
const (
	alpnH2    = "h2"
	alpnHTTP1 = "http/1.1"
	alpnH3    = "h3"
)

// Default dial settings.
const (
	// DefaultConnectTimeout bounds dialing plus the TLS handshake when neither the peer nor the
	// transport sets one.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultKeepAlive is the TCP keep-alive idle time and probe interval.
	DefaultKeepAlive = 15 * time.Second
	// tlsSessionCacheSize is the number of TLS sessions remembered per pool key.
	tlsSessionCacheSize = 32
)

var (
	nextProtosH1   = []string{alpnHTTP1}
	nextProtosH2   = []string{alpnH2}
	nextProtosBoth = []string{alpnH2, alpnHTTP1}
	nextProtosH3   = []string{alpnH3}
)

// DialFunc dials a TCP connection to addr ("host:port"). The returned conn should be a
// *net.TCPConn (or implement syscall.Conn) for the pool's stale-connection check to apply.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialed is the result of connecting to a peer: the transport conn (TLS or plain) and the
// protocol to speak on it.
type dialed struct {
	conn net.Conn
	// raw is the TCP conn below TLS, used for the idle liveness check; nil when unknown.
	raw net.Conn
	h2  bool
}

// tlsConfigFor builds the client TLS configuration of a pool key. It is built once per pool
// bucket, so the session cache it holds is per key and resumption never crosses keys.
func tlsConfigFor(k *PoolKey) *tls.Config {
	cfg := &tls.Config{
		ServerName:         k.ServerName,
		InsecureSkipVerify: k.Insecure,
		RootCAs:            k.RootCAs,
		MinVersion:         k.MinVersion,
		ClientSessionCache: tls.NewLRUClientSessionCache(tlsSessionCacheSize),
	}
	if cfg.ServerName == "" {
		cfg.ServerName = hostOnly(k.Address)
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if k.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*k.ClientCert}
	}
	switch k.Protocol {
	case HTTP2:
		cfg.NextProtos = nextProtosH2
	case HTTP2OrHTTP1:
		cfg.NextProtos = nextProtosBoth
	case HTTP3:
		cfg.NextProtos = nextProtosH3
		cfg.MinVersion = tls.VersionTLS13
	default:
		cfg.NextProtos = nextProtosH1
	}
	return cfg
}

// hostOnly returns the host part of a host:port address, without IPv6 brackets.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// connect dials the peer of bucket b and performs the TLS handshake, all within the connect
// timeout. Errors are *fault.Error of kind ConnectTimeout, ConnectRefused or TLSHandshake
// with Retry set (nothing was sent), or Canceled/TotalTimeout when ctx ended first.
func (t *Transport) connect(ctx context.Context, b *bucket, connectTimeout time.Duration) (dialed, error) {
	dctx := ctx
	if connectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	conn, err := t.dial(dctx, b.key.Address)
	if err != nil {
		return dialed{}, classifyDial(ctx, fault.ConnectRefused, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Go enables TCP_NODELAY by default; set it explicitly so a custom dialer gets it too.
		_ = tc.SetNoDelay(true)
	}
	if b.key.Proxy != 0 {
		if err := writeProxyHeader(dctx, conn, &b.key); err != nil {
			conn.Close()
			return dialed{}, classifyDial(ctx, fault.ConnectRefused, err)
		}
	}
	d := dialed{conn: conn, raw: conn}
	if !b.key.TLS {
		d.h2 = b.key.Protocol == HTTP2
		return d, nil
	}
	tc := tls.Client(conn, b.tlsConfig)
	if err := tc.HandshakeContext(dctx); err != nil {
		conn.Close()
		return dialed{}, classifyDial(ctx, fault.TLSHandshake, err)
	}
	d.conn = tc
	switch proto := tc.ConnectionState().NegotiatedProtocol; {
	case proto == alpnH2:
		d.h2 = true
	case b.key.Protocol == HTTP2:
		tc.Close()
		return dialed{}, &fault.Error{Source: fault.Upstream, Kind: fault.TLSHandshake, Retry: true,
			Cause: fmt.Errorf("peer %s did not negotiate h2 by ALPN (got %q)", b.key.Address, proto)}
	}
	return d, nil
}

// dial opens the TCP connection with the transport's dial function or the default dialer.
func (t *Transport) dial(ctx context.Context, addr string) (net.Conn, error) {
	if t.DialContext != nil {
		return t.DialContext(ctx, "tcp", addr)
	}
	return t.cfg.dialer.DialContext(ctx, "tcp", addr)
}

// newDialer returns the default TCP dialer: keep-alive probes after ka idle time (negative
// disables them). Timeouts come from the context.
func newDialer(ka time.Duration) *net.Dialer {
	d := &net.Dialer{}
	if ka < 0 {
		d.KeepAlive = -1
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: false}
		return d
	}
	d.KeepAlive = ka
	d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka, Count: 3}
	return d
}

// classifyDial turns a dial or handshake failure into a retryable upstream *fault.Error. kind
// is the class used when the error is neither a timeout nor a cancellation of ctx: for a dial,
// ConnectRefused covers refusals, unreachable hosts and name resolution failures.
func classifyDial(ctx context.Context, kind fault.Kind, err error) *fault.Error {
	fe := &fault.Error{Source: fault.Upstream, Kind: kind, Retry: true, Cause: err}
	switch {
	case ctx.Err() != nil:
		// The caller's context ended (client gone, or the total timeout): not the peer's fault.
		fe.Retry = false
		fe.Kind = fault.Canceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			fe.Kind = fault.TotalTimeout
		}
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		fe.Kind = fault.ConnectTimeout
	}
	return fe
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
