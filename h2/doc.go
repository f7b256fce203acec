// Package h2 adapts golang.org/x/net/http2 to Verge's protocol-neutral model. It is the only
// package in Verge that imports x/net/http2.
//
// Downstream, a [Server] serves one HTTP/2 connection at a time through [Server.ServeConn]:
// TLS connections that negotiated "h2" by ALPN and plain-text connections that start with the
// HTTP/2 client preface (h2c with prior knowledge). Each stream becomes a
// [message.ServerExchange] handed to [Server.Handler]. The server reads the client's frames
// through a small filter that corrects two deviations of x/net/http2 from RFC 9113
// (repeated settings, connection-specific request fields); see docs/http2.md, "h2spec".
//
// Upstream, a [ClientConn] wraps one already-dialed connection to an origin and multiplexes
// many [ClientConn.RoundTrip] calls over it, converting [message.Request] to HTTP/2 and the
// response back to [message.Response]. Failures are *fault.Error values with Source
// fault.Upstream, marked Retry when the peer never saw the request.
//
// Header names are presented in lower case, as HTTP/2 carries them on the wire (RFC 9113
// section 8.2.1). x/net/http2 hands headers over as a map, so the order of distinct field
// names is lost; the adapter sorts names so the order is deterministic and keeps the order of
// values of one name. docs/http2.md describes defaults, limits and the mapping in full.
package h2
