// Package http1 is Verge's own HTTP/1.1 codec: a strict RFC 9112 request parser and response
// writer for downstream connections (Server, Exchange) and a request writer and response parser
// for upstream connections (ClientConn). It does not use net/http.
//
// Parsing is strict: anything that could make two HTTP/1.1 implementations disagree on where a
// message ends (conflicting Content-Length and Transfer-Encoding, obsolete line folding, bare CR
// or LF, malformed chunk sizes, unknown transfer codings) is rejected, and the connection is
// closed. docs/http1.md lists each rule with its RFC 9112 section.
//
// # Memory
//
// Steady-state request handling allocates nothing: read and write buffers come from pools, the
// Exchange is reused for every request of a connection, and the strings of a message.Request
// (method, target, header names and values, trailers) point into the connection's read buffer
// (unsafe.String). They are valid until the handler returns; code that keeps one longer must
// copy it (strings.Clone). An idle keep-alive connection holds no buffer: it waits for the next
// request with a one-byte read into an array of its own and takes a pooled buffer when bytes
// arrive.
//
// The same rule holds on the client side: the strings of a message.Response returned by
// ClientConn.RoundTrip are valid until its Body is closed.
package http1
