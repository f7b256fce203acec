package h3

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/fault"
)

// h3Code returns the HTTP/3 error code carried by err (a stream reset or a connection close by
// the application), if any.
func h3Code(err error) (http3.ErrCode, bool) {
	if he, ok := errors.AsType[*http3.Error](err); ok {
		return he.ErrorCode, true
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return http3.ErrCode(se.ErrorCode), true
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return http3.ErrCode(ae.ErrorCode), true
	}
	return 0, false
}

// downstreamError classifies an error of the client's stream.
func downstreamError(err error) error {
	if _, ok := errors.AsType[*fault.Error](err); ok {
		return err
	}
	kind := fault.ConnectionClosed
	code, ok := h3Code(err)
	switch {
	case errors.Is(err, context.Canceled):
		kind = fault.Canceled
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Abort set a past deadline, or a write made no progress.
		kind = fault.Canceled
	case ok && (code == http3.ErrCodeRequestCanceled || code == http3.ErrCodeNoError):
		kind = fault.Canceled
	case ok && (code == http3.ErrCodeMessageError || code == http3.ErrCodeFrameError ||
		code == http3.ErrCodeGeneralProtocolError || code == http3.ErrCodeRequestIncomplete):
		kind = fault.InvalidRequest
	case isIdle(err):
		kind = fault.IdleTimeout
	}
	return &fault.Error{Source: fault.Downstream, Kind: kind, Cause: err}
}

func isIdle(err error) bool {
	_, ok := errors.AsType[*quic.IdleTimeoutError](err)
	return ok
}

// upstreamError classifies an error of a round trip. retryable says whether the request could
// be sent again as it is (its body was not consumed); Retry is set only then.
func upstreamError(err error, reused, retryable bool) *fault.Error {
	if fe, ok := errors.AsType[*fault.Error](err); ok {
		return fe
	}
	fe := &fault.Error{Source: fault.Upstream, Reused: reused, Cause: err}
	code, hasCode := h3Code(err)
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		fe.Kind = fault.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		fe.Kind = fault.ReadTimeout
	case isIdle(err):
		fe.Kind = fault.IdleTimeout
	case notProcessed(err, code, hasCode):
		fe.Kind = fault.ConnectionClosed
		fe.Retry, fe.Unprocessed = retryable, true
	case hasCode && (code == http3.ErrCodeMessageError || code == http3.ErrCodeFrameError ||
		code == http3.ErrCodeGeneralProtocolError || code == http3.ErrCodeFrameUnexpected ||
		code == http3.ErrCodeQPACKDecompressionFailed):
		fe.Kind = fault.InvalidResponse
	case errors.As(err, &ne) && ne.Timeout():
		fe.Kind = fault.ReadTimeout
	default:
		fe.Kind = fault.ConnectionClosed
	}
	return fe
}

// notProcessed reports whether err guarantees the origin did not process the request: it
// rejected the stream (H3_REQUEST_REJECTED, RFC 9114 section 4.1.1), the connection was
// unusable before the stream opened, or a GOAWAY excluded it.
func notProcessed(err error, code http3.ErrCode, hasCode bool) bool {
	if hasCode && code == http3.ErrCodeRequestRejected {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "http3: conn unusable") || strings.Contains(msg, "GOAWAY")
}

func slogDefault() *slog.Logger { return slog.Default() }
