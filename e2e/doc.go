// Package e2e holds end-to-end tests of the proxy engine: real origins (HTTP/1.1, h2c, TLS h2,
// WebSocket, gRPC) started by the tests, Verge's server and engine in between, and standard
// clients in front, all on loopback.
package e2e
