// Package h2 is Verge's HTTP/2: its own server, and a client adapter over
// golang.org/x/net/http2. It is the only package in Verge that imports x/net/http2.
//
// Downstream, a [Server] serves one HTTP/2 connection at a time through [Server.ServeConn]:
// TLS connections that negotiated "h2" by ALPN and plain-text connections that start with the
// HTTP/2 client preface (h2c with prior knowledge). The server is implemented here (frames,
// stream states, flow control, RFC 9113) with x/net's HPACK decoder. One reader goroutine per
// connection parses frames and runs the connection's state machine; each stream becomes a
// [message.ServerExchange] handed to [Server.Handler] on a pooled goroutine; handlers append
// their frames to one buffer per connection, which a writer goroutine sends in one write per
// batch. Request fields keep their arrival order, with lower-case names as on the wire
// (RFC 9113 section 8.2.1).
//
// Upstream, a [ClientConn] wraps one already-dialed connection to an origin and multiplexes
// many [ClientConn.RoundTrip] calls over it, converting [message.Request] to HTTP/2 and the
// response back to [message.Response] through x/net/http2's Transport. Failures are
// *fault.Error values with Source fault.Upstream, marked Retry when the peer never saw the
// request. x/net/http2 hands response headers over as a map, so the client sorts names to
// make the order deterministic, keeping the order of values of one name.
//
// docs/http2.md describes defaults, limits and the mapping in full.
package h2
