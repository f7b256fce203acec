package message

import (
	"context"
	"crypto/tls"
	"io"
	"net/netip"
)

// Protocol names used in Request.Proto and Response.Proto.
const (
	HTTP10 = "HTTP/1.0"
	HTTP11 = "HTTP/1.1"
	HTTP2  = "HTTP/2.0"
	HTTP3  = "HTTP/3.0"
)

// Request is a request head with a streamed body, independent of the protocol that carried it.
type Request struct {
	// Method is the request method, e.g. "GET".
	Method string
	// Target is the request-target: origin-form ("/path?query") for ordinary requests, the
	// authority for CONNECT, "*" for a server-wide OPTIONS. For HTTP/2 and HTTP/3 it is :path.
	Target string
	// Scheme is "http" or "https": the scheme the request arrived with (:scheme, or the
	// listener's for HTTP/1.x) or, on an upstream request, the scheme used towards the peer.
	Scheme string
	// Authority is the Host header of HTTP/1.x or :authority of HTTP/2 and HTTP/3. Header does
	// not hold Host: writers emit it from Authority.
	Authority string
	// Proto is HTTP10, HTTP11, HTTP2 or HTTP3.
	Proto string
	// Header holds the fields in arrival order, without Host and without pseudo-headers.
	Header Header
	// ContentLength is the body length, or -1 when unknown (chunked, or an HTTP/2 stream without
	// content-length). 0 with a nil Body means no body.
	ContentLength int64
	// Body streams the body; nil means no body. Reading it to io.EOF fills Trailer.
	Body io.Reader
	// Trailer holds trailer fields, complete once Body returned io.EOF.
	Trailer Header
	// Interim, when non-nil on a request sent upstream, receives each informational (1xx)
	// response other than 101 that arrives before the final response, in order (RFC 9110
	// section 15.2). h and its strings are valid only during the call. The client codecs call
	// it from the RoundTrip goroutine (HTTP/1.1) or from their connection's reader (HTTP/2,
	// HTTP/3), never concurrently and never after RoundTrip returned; it must not block for
	// long. A non-nil error fails the round trip. Nil means interim responses are read and
	// dropped. Servers leave it nil on downstream requests.
	Interim func(status int, h *Header) error
}

// Idempotent reports whether method is idempotent (RFC 9110 section 9.2.2): repeating a
// request with it has the same effect as sending it once, so it may be retried automatically.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// Path returns the target up to the first '?'.
func (r *Request) Path() string {
	for i := 0; i < len(r.Target); i++ {
		if r.Target[i] == '?' {
			return r.Target[:i]
		}
	}
	return r.Target
}

// RawQuery returns the target after the first '?', or "".
func (r *Request) RawQuery() string {
	for i := 0; i < len(r.Target); i++ {
		if r.Target[i] == '?' {
			return r.Target[i+1:]
		}
	}
	return ""
}

// Host returns Authority without a port.
func (r *Request) Host() string { return StripPort(r.Authority) }

// Reset clears r for reuse, keeping header storage.
func (r *Request) Reset() {
	r.Method, r.Target, r.Scheme, r.Authority, r.Proto = "", "", "", "", ""
	r.Header.Reset()
	r.Trailer.Reset()
	r.ContentLength = 0
	r.Body = nil
	r.Interim = nil
}

// Response is a response head with a streamed body, independent of the protocol.
type Response struct {
	// Status is the status code.
	Status int
	// Reason is the HTTP/1 reason phrase; empty means the standard text for Status.
	Reason string
	// Proto is the protocol the response arrived with, HTTP11, HTTP2 or HTTP3.
	Proto string
	// Header holds the fields in arrival order, without pseudo-headers.
	Header Header
	// ContentLength is the body length, or -1 when unknown (the body is then chunked on
	// HTTP/1.1 or delimited by close on HTTP/1.0).
	ContentLength int64
	// Body streams the body; nil means no body. Close releases the upstream connection: back to
	// the pool when the body was read to io.EOF, closed otherwise. For a 101 Switching Protocols
	// response from an upstream, Body also implements io.Writer: it is the upgraded stream.
	Body io.ReadCloser
	// Trailer holds trailer fields, complete once Body returned io.EOF.
	Trailer Header
	// TransferCoding lists the transfer codings other than a final chunked that Body still
	// carries undecoded, as the HTTP/1.1 origin named them in Transfer-Encoding (for example
	// "gzip"); empty for nearly every response. Verge decodes no coding but chunked: an
	// HTTP/1.1 downstream gets the body with "Transfer-Encoding: <TransferCoding>, chunked"
	// (RFC 9112 section 6.1); HTTP/1.0, HTTP/2 and HTTP/3 downstreams cannot carry a transfer
	// coding and get the coded bytes without it. The cache does not store such a response.
	TransferCoding string
}

// Reset clears r for reuse, keeping header storage.
func (r *Response) Reset() {
	r.Status, r.Reason, r.Proto, r.TransferCoding = 0, "", "", ""
	r.Header.Reset()
	r.Trailer.Reset()
	r.ContentLength = 0
	r.Body = nil
}

// ConnInfo describes the downstream connection an exchange arrived on.
type ConnInfo struct {
	RemoteAddr netip.AddrPort
	LocalAddr  netip.AddrPort
	// TLS is nil on a plain-text connection.
	TLS *tls.ConnectionState
	// Proto is HTTP11, HTTP2 or HTTP3 (HTTP/1.0 requests arrive on HTTP11 connections).
	Proto string
	// JA4 is the JA4 fingerprint of the client's TLS hello (package fingerprint), empty on
	// plain-text connections.
	JA4 string
}

// ServerExchange is one request/response exchange on the downstream side, as every protocol
// adapter (http1, h2, h3) presents it to the proxy engine.
//
// The adapter has parsed the request head when the exchange is handed over; the engine then
// writes exactly one final response head, any number of body chunks and a Finish. A 100
// Continue interim response is sent by the adapter itself when the handler first reads a body
// that asked for it; other interim responses go through InterimWriter.
type ServerExchange interface {
	// Request returns the downstream request. Its Body streams the request body.
	Request() *Request
	// Context is canceled when the exchange can no longer be answered: the HTTP/2 or HTTP/3
	// stream was reset, or the server is shutting the connection down. It must not allocate
	// per exchange (return the connection's context where there is nothing finer).
	Context() context.Context
	// Conn describes the connection the request arrived on.
	Conn() *ConnInfo
	// WriteHeader sends the response head. resp.Body is ignored. For HTTP/1.1, a
	// ContentLength of -1 selects chunked framing (or close-delimited for HTTP/1.0 clients).
	// The adapter removes hop-by-hop fields that do not apply to its protocol.
	WriteHeader(resp *Response) error
	// Write sends body bytes. It blocks while the client is not reading (backpressure).
	Write(p []byte) (int, error)
	// Flush pushes buffered body bytes to the client now.
	Flush() error
	// Finish ends the response, with trailers when trailer is non-nil and non-empty and the
	// protocol can carry them. After Finish the exchange must not be used.
	Finish(trailer *Header) error
	// Abort ends the exchange abnormally: the HTTP/1 connection is closed, the HTTP/2 or
	// HTTP/3 stream is reset. Used when a response cannot be completed.
	Abort(err error)
}

// InterimWriter is implemented by exchanges that can send informational (1xx) responses ahead
// of the final one: the http1, h2 and h3 server exchanges. The proxy engine finds it by type
// assertion to forward an origin's 103 Early Hints, 100 Continue and 102 Processing, and the
// phases API uses it for Early Hints (proxy.Session.WriteInterim).
type InterimWriter interface {
	// WriteInterim sends an informational response head with status (100-199 except 101) and
	// the fields of h (nil means none) at once; connection-specific fields are dropped. It
	// fails once the final head was written. It sends nothing and returns nil where the
	// response cannot be carried: to an HTTP/1.0 client (RFC 9110 section 15.2), and for a
	// second 100 Continue (the adapter may have sent one itself when the body was read).
	WriteInterim(status int, h *Header) error
}

// Upgrader is implemented by HTTP/1.1 exchanges that can switch protocols (WebSocket).
type Upgrader interface {
	// Upgrade writes resp (a 101 response head) and returns the raw connection, including any
	// bytes the client sent after its request head. The exchange then belongs to the caller,
	// who must Close the returned stream.
	Upgrade(resp *Response) (io.ReadWriteCloser, error)
}

// StripPort removes a ":port" suffix from a host, handling bracketed IPv6 literals.
func StripPort(hostport string) string {
	if len(hostport) > 0 && hostport[0] == '[' {
		for i := 1; i < len(hostport); i++ {
			if hostport[i] == ']' {
				return hostport[1:i]
			}
		}
		return hostport
	}
	for i := len(hostport) - 1; i >= 0; i-- {
		if hostport[i] == ':' {
			return hostport[:i]
		}
		if hostport[i] < '0' || hostport[i] > '9' {
			break
		}
	}
	return hostport
}
