package h2

import (
	"context"
	"errors"
	"net"
	"os"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/fault"
)

// Error texts of x/net/http2's unexported sentinel errors that say a request never reached
// the server's application: the connection was unusable before the stream was opened, or
// the server's GOAWAY excluded the stream (RFC 9113 section 6.8). x/net/http2 retries these
// itself in its own pool; Verge's pool learns of them through fault.Error.Retry.
const (
	msgConnUnusable      = "http2: client conn not usable"
	msgConnGotGoAway     = "http2: Transport received Server's graceful shutdown GOAWAY"
	msgConnNotEstablised = "http2: client conn could not be established"
	msgRequestCanceled   = "net/http: request canceled"
	msgHeaderListTooBig  = "http2: request header list larger than peer's advertised limit"
)

// isStreamCode reports whether err is a stream error with the given code.
func isStreamCode(err error, code http2.ErrCode) bool {
	var se http2.StreamError
	return errors.As(err, &se) && se.Code == code
}

// notProcessed reports whether err guarantees the server did not process the request.
func notProcessed(err error) bool {
	if isStreamCode(err, http2.ErrCodeRefusedStream) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case msgConnUnusable, msgConnGotGoAway, msgConnNotEstablised:
			return true
		}
	}
	return false
}

// upstreamError classifies an error of a round trip. retryable says whether the request could
// be sent again as it is (its body was not consumed); Retry is set only then.
func upstreamError(err error, reused, retryable bool) *fault.Error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return fe
	}
	fe = &fault.Error{Source: fault.Upstream, Reused: reused, Cause: err}
	var (
		ge http2.GoAwayError
		se http2.StreamError
		ce http2.ConnectionError
		ne net.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		fe.Kind = fault.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		fe.Kind = fault.ReadTimeout
	case notProcessed(err):
		fe.Kind = fault.ConnectionClosed
		fe.Retry, fe.Unprocessed = retryable, true
	case err.Error() == msgRequestCanceled:
		fe.Kind = fault.Canceled
	case err.Error() == msgHeaderListTooBig:
		fe.Kind = fault.HeaderTooLarge
	case errors.As(err, &ge):
		fe.Kind = fault.ConnectionClosed
	case errors.As(err, &se):
		switch se.Code {
		case http2.ErrCodeProtocol, http2.ErrCodeFlowControl, http2.ErrCodeFrameSize,
			http2.ErrCodeCompression:
			fe.Kind = fault.InvalidResponse
		default:
			fe.Kind = fault.ConnectionClosed
		}
	case errors.As(err, &ce):
		fe.Kind = fault.InvalidResponse
	default:
		fe.Kind = fault.Classify(fault.Upstream, err).Kind
		if fe.Kind == fault.Unknown {
			fe.Kind = fault.ConnectionClosed
		}
	}
	return fe
}
