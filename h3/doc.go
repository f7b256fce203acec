// Package h3 adapts github.com/quic-go/quic-go to Verge's protocol-neutral model: HTTP/3 over
// QUIC on both sides of the proxy. It is the only package in Verge that imports quic-go.
//
// Downstream, a [Socket] owns one UDP socket (a net.PacketConn, so it can be inherited across
// binary upgrades) and the QUIC transport on it; a [Server] serves HTTP/3 on a Socket, and each
// request stream becomes a [message.ServerExchange] handed to the Server's handler. A Socket
// serves one Server at a time: attaching a new Server (a configuration reload) stops the
// previous one from accepting, while its connections drain on the same socket.
//
// The Server guards its handshakes: a cap on handshakes in flight, and address validation with
// QUIC Retry (RFC 9000 section 8.1.2) that switches on by itself while the number of handshakes
// in flight is high, so a flood of spoofed Initial packets costs one stateless packet each.
// 0-RTT is off by default; when enabled, requests that arrived in early data carry
// "Early-Data: 1" and requests with a non-idempotent method are answered 425 Too Early by the
// adapter itself (RFC 8470), before any handler sees them.
//
// Upstream, [Dial] opens a QUIC connection to an origin and returns a [ClientConn] that
// multiplexes many [ClientConn.RoundTrip] calls over it, converting [message.Request] to
// HTTP/3 and the response back to [message.Response] with streamed bodies and trailers.
//
// docs/http3.md describes defaults, limits and behaviour in full.
package h3
