// Package fault classifies the errors of a proxied exchange by where they came from and whether
// the request may be retried, and maps each to the HTTP status a client receives. It is the one
// place where errors become status codes.
package fault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

// Source says which side of the proxy an error came from.
type Source uint8

const (
	// Internal errors are Verge's own or a phase's.
	Internal Source = iota
	// Downstream errors come from the client connection.
	Downstream
	// Upstream errors come from the origin or the way to it.
	Upstream
)

func (s Source) String() string {
	switch s {
	case Downstream:
		return "downstream"
	case Upstream:
		return "upstream"
	default:
		return "internal"
	}
}

// Kind says what went wrong.
type Kind uint8

const (
	Unknown Kind = iota
	// ConnectTimeout: dialing the peer took longer than its connect timeout.
	ConnectTimeout
	// ConnectRefused: the peer refused the connection or was unreachable.
	ConnectRefused
	// TLSHandshake: the TLS handshake with the peer failed (including verification).
	TLSHandshake
	// ConnectionClosed: the peer closed the connection before a complete response.
	ConnectionClosed
	// ReadTimeout, WriteTimeout, IdleTimeout, TotalTimeout: a wait exceeded its limit.
	ReadTimeout
	WriteTimeout
	IdleTimeout
	TotalTimeout
	// InvalidResponse: the upstream sent a malformed response.
	InvalidResponse
	// InvalidRequest: the client sent a malformed request (framing in doubt).
	InvalidRequest
	// RequestTooLarge, HeaderTooLarge, URITooLong: limits exceeded by the client.
	RequestTooLarge
	HeaderTooLarge
	URITooLong
	// NoUpstream: no peer could be chosen (all unhealthy, no route).
	NoUpstream
	// Forbidden: refused by policy (e.g. CONNECT disabled).
	Forbidden
	// MethodNotAllowed: a method the proxy refuses.
	MethodNotAllowed
	// TooManyRequests: a rate limit said no.
	TooManyRequests
	// Canceled: the client went away.
	Canceled
	// WorkerFailed: an edge function trapped, timed out or ran out of memory.
	WorkerFailed
)

var kindNames = [...]string{
	Unknown: "unknown", ConnectTimeout: "connect timeout", ConnectRefused: "connect refused",
	TLSHandshake: "tls handshake", ConnectionClosed: "connection closed", ReadTimeout: "read timeout",
	WriteTimeout: "write timeout", IdleTimeout: "idle timeout", TotalTimeout: "total timeout",
	InvalidResponse: "invalid response", InvalidRequest: "invalid request",
	RequestTooLarge: "request too large", HeaderTooLarge: "header too large", URITooLong: "uri too long",
	NoUpstream: "no upstream", Forbidden: "forbidden", MethodNotAllowed: "method not allowed",
	TooManyRequests: "too many requests", Canceled: "canceled", WorkerFailed: "worker failed",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is a classified error. Retry says whether the engine may send the request again,
// to the same or another peer; phases may change it.
type Error struct {
	Source Source
	Kind   Kind
	// Retry marks the error as safe to retry (e.g. a connect failure, or a failure on a reused
	// connection before any response byte arrived).
	Retry bool
	// Reused records that the failure happened on a pooled connection that had served earlier
	// requests.
	Reused bool
	// Unprocessed records that the peer certainly did not process the request (an HTTP/2
	// stream refused or excluded by GOAWAY, RFC 9113 section 8.7; an HTTP/3 stream rejected
	// with H3_REQUEST_REJECTED or excluded by GOAWAY, RFC 9114 section 4.1.1; a new
	// connection whose HTTP/2 client failed to start), so that repeating it is safe whatever
	// its method. Connect failures (ConnectTimeout, ConnectRefused, TLSHandshake) need not set
	// it. A failure on a reused HTTP/1 connection is never Unprocessed: the origin may have
	// read the request before closing.
	Unprocessed bool
	// Status, when non-zero, overrides the status derived from Source and Kind.
	Status int
	// Cause is the underlying error.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return e.Source.String() + " " + e.Kind.String()
	}
	return e.Source.String() + " " + e.Kind.String() + ": " + e.Cause.Error()
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns a classified error.
func New(src Source, kind Kind, cause error) *Error {
	return &Error{Source: src, Kind: kind, Cause: cause}
}

// StatusCode is the status sent to the client for e: the single mapping from errors to
// statuses.
func (e *Error) StatusCode() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Kind {
	case InvalidRequest:
		return 400
	case RequestTooLarge:
		return 413
	case HeaderTooLarge:
		return 431
	case URITooLong:
		return 414
	case Forbidden:
		return 403
	case MethodNotAllowed:
		return 405
	case TooManyRequests:
		return 429
	case Canceled:
		return 499 // logged only: the client is gone
	case NoUpstream:
		return 503
	case ConnectTimeout, ReadTimeout, WriteTimeout, IdleTimeout, TotalTimeout:
		if e.Source == Upstream {
			return 504
		}
		if e.Source == Downstream {
			return 408
		}
		return 500
	case ConnectionClosed:
		if e.Source == Downstream {
			return 499 // the client closed the connection: logged only
		}
		return 502
	case ConnectRefused, TLSHandshake, InvalidResponse:
		return 502
	case WorkerFailed:
		return 500
	}
	if e.Source == Upstream {
		return 502
	}
	return 500
}

// As returns err as an *Error if it is one (or wraps one), else classifies it as an internal
// error of unknown kind.
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Source: Internal, Kind: Unknown, Cause: err}
}

// Classify turns an I/O error met while talking to src into an *Error, recognising timeouts,
// cancellations and closed connections. An *Error is returned unchanged.
func Classify(src Source, err error) *Error { return classify(src, err, false) }

// ClassifyWrite is Classify for an error met while writing to src: a timeout is a
// WriteTimeout (a client that stopped reading, an origin that stopped taking the request
// body), whatever the error value says.
func ClassifyWrite(src Source, err error) *Error { return classify(src, err, true) }

// classify is Classify; write says the error came from a write. A timeout from a socket write
// (*net.OpError with Op "write") is a WriteTimeout either way.
func classify(src Source, err error, write bool) *Error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	kind := Unknown
	switch {
	case errors.Is(err, context.Canceled):
		kind = Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		kind = ReadTimeout
		if write || isWriteOp(err) {
			kind = WriteTimeout
		}
	case errors.Is(err, net.ErrClosed), isEOF(err), isReset(err):
		kind = ConnectionClosed
	}
	return &Error{Source: src, Kind: kind, Cause: err}
}

// isWriteOp reports whether err came from a socket write (*net.OpError with Op "write").
func isWriteOp(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
