// Package proxy is Verge's engine: a request passes through a fixed order of phases that a Go
// program implements to build its own reverse proxy, in the manner of Pingora's ProxyHttp.
// Only UpstreamPeer is required; embed Base to get the defaults for the rest.
//
// The order is drawn in docs/phases.md:
//
//	EarlyRequest -> Request -> [cache lookup] -> UpstreamPeer -> UpstreamRequest
//	  -> (connect, send) -> UpstreamResponse -> [cache store] -> Response
//	  -> ResponseBody ... -> Logging
//
// with RequestBody filtering the request body as it streams upstream, FailToConnect and
// ErrorWhileProxy deciding retries, and FailToProxy writing the error response.
package proxy

import (
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// Phases is the set of hooks the engine calls for each request. C is the per-request context
// type: the engine keeps one C per in-flight request, zeroed before each request, and passes a
// pointer to it to every phase, so state flows between phases without context.Value and without
// an allocation per request.
type Phases[C any] interface {
	// EarlyRequest runs first, before any other phase, e.g. to set up per-request state. An
	// error ends the request through FailToProxy.
	EarlyRequest(s *Session, c *C) error

	// Request may inspect or change the downstream request, or answer it directly (s.Respond)
	// and return handled=true, in which case no upstream is contacted. Authentication and rate
	// limiting belong here.
	Request(s *Session, c *C) (handled bool, err error)

	// UpstreamPeer chooses where the request goes. It is the one phase without a default. It is
	// called again before each retry, so a load balancer can pick a different peer.
	UpstreamPeer(s *Session, c *C) (*upstream.Peer, error)

	// UpstreamRequest may change the request sent upstream (headers, target, authority). Hop-by-
	// hop fields are already removed and Via/X-Forwarded-* already added. req.Interim relays
	// the origin's informational (1xx) responses downstream when the client can receive them;
	// setting it to nil drops them instead.
	UpstreamRequest(s *Session, req *message.Request, c *C) error

	// RequestBody filters the request body as it streams upstream. chunk is the next piece (it
	// may be empty when eos is true); the returned slice is sent instead. The slice passed in is
	// reused after the call returns.
	RequestBody(s *Session, chunk []byte, eos bool, c *C) ([]byte, error)

	// UpstreamResponse sees the response head as it came from the origin (after hop-by-hop
	// removal), before any cache decision.
	UpstreamResponse(s *Session, resp *message.Response, c *C) error

	// Response may change the response head sent downstream.
	Response(s *Session, resp *message.Response, c *C) error

	// ResponseBody filters the response body as it streams downstream, like RequestBody. When a
	// filter changes the body length, Response should set resp.ContentLength to -1.
	ResponseBody(s *Session, chunk []byte, eos bool, c *C) ([]byte, error)

	// FailToConnect runs when connecting to peer failed. It returns the error to act on; setting
	// its Retry field asks for another attempt (the engine still enforces MaxRetries and
	// request-body rules).
	FailToConnect(s *Session, peer *upstream.Peer, err *fault.Error, c *C) *fault.Error

	// ErrorWhileProxy runs when the exchange with a connected peer failed before the response
	// head arrived. Like FailToConnect, its result decides about a retry. err arrives with
	// Retry cleared for a non-idempotent method (RFC 9112 section 9.3.1: the origin may have
	// received the request); a phase that knows the request is safe to repeat may set it.
	ErrorWhileProxy(s *Session, peer *upstream.Peer, err *fault.Error, c *C) *fault.Error

	// FailToProxy answers a request that failed and returns the status sent. The default writes
	// a short plain-text error with err.StatusCode() if no response head was sent yet, and
	// aborts the exchange otherwise.
	FailToProxy(s *Session, err *fault.Error, c *C) int

	// Logging runs last for every request, whatever happened; err is nil on success.
	Logging(s *Session, err *fault.Error, c *C)
}

// Base implements every phase except UpstreamPeer with the default behaviour. Embed it:
//
//	type MyProxy struct{ proxy.Base[MyCtx] }
//	func (MyProxy) UpstreamPeer(s *proxy.Session, c *MyCtx) (*upstream.Peer, error) { ... }
type Base[C any] struct{}

// EarlyRequest does nothing.
func (Base[C]) EarlyRequest(*Session, *C) error { return nil }

// Request does nothing and lets the request continue upstream.
func (Base[C]) Request(*Session, *C) (bool, error) { return false, nil }

// UpstreamRequest leaves the upstream request as it is.
func (Base[C]) UpstreamRequest(*Session, *message.Request, *C) error { return nil }

// RequestBody passes the chunk through.
func (Base[C]) RequestBody(_ *Session, chunk []byte, _ bool, _ *C) ([]byte, error) {
	return chunk, nil
}

// UpstreamResponse leaves the response as it is.
func (Base[C]) UpstreamResponse(*Session, *message.Response, *C) error { return nil }

// Response leaves the response as it is.
func (Base[C]) Response(*Session, *message.Response, *C) error { return nil }

// ResponseBody passes the chunk through.
func (Base[C]) ResponseBody(_ *Session, chunk []byte, _ bool, _ *C) ([]byte, error) {
	return chunk, nil
}

// FailToConnect returns err unchanged: connect failures are retryable.
func (Base[C]) FailToConnect(_ *Session, _ *upstream.Peer, err *fault.Error, _ *C) *fault.Error {
	return err
}

// ErrorWhileProxy returns err unchanged.
func (Base[C]) ErrorWhileProxy(_ *Session, _ *upstream.Peer, err *fault.Error, _ *C) *fault.Error {
	return err
}

// FailToProxy writes the default error response.
func (Base[C]) FailToProxy(s *Session, err *fault.Error, _ *C) int { return s.RespondError(err) }

// Logging does nothing.
func (Base[C]) Logging(*Session, *fault.Error, *C) {}
