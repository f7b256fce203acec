package h2

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// bridge is the HTTP/2 flavour of the shared exchange core.
var bridge = httpbridge.NewProtocol(httpbridge.ProtocolConfig{
	Name:            "h2",
	Version:         "HTTP/2",
	DownstreamError: downstreamError,
})

// connHandler is the http.Handler x/net/http2 calls for each stream of one connection.
type connHandler struct {
	st   *serverState
	info *message.ConnInfo
}

// ServeHTTP converts the stream into an exchange, runs the Server's Handler and resets the
// stream when the handler did not finish the exchange.
func (h *connHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fn := h.st.srv.Handler
	if fn == nil {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusNotFound)
		return
	}
	// The exchange is not pooled: x/net/http2's client side may still read or close a
	// request body that points into it after the round trip (and this handler) ended, as
	// http.RoundTripper permits, so its memory must not be reused.
	ex := &exchange{h: h}
	scheme := "http"
	if r.TLS != nil || h.info.TLS != nil {
		scheme = "https"
	}
	ex.Init(bridge, h.st.logger, w, r, scheme, message.HTTP2)
	if r.ContentLength != 0 {
		ex.AttachBody()
	}
	if ex.Run(ex, fn) {
		// x/net/http2 recovers this value without logging and resets the stream with
		// INTERNAL_ERROR; it never reaches a caller.
		panic(http.ErrAbortHandler)
	}
}

// exchange is one HTTP/2 stream presented as a message.ServerExchange. WriteHeader sends a
// head-only response (such as a gRPC trailers-only response) as one HEADERS frame with
// END_STREAM; Abort resets the stream with RST_STREAM INTERNAL_ERROR at once.
type exchange struct {
	httpbridge.Exchange
	h *connHandler
}

var _ message.ServerExchange = (*exchange)(nil)

// Conn describes the connection.
func (ex *exchange) Conn() *message.ConnInfo { return ex.h.info }

// downstreamError classifies an error of the client's stream.
func downstreamError(err error) error {
	var fe *fault.Error
	if errors.As(err, &fe) {
		return err
	}
	kind := fault.Unknown
	switch msg := err.Error(); {
	case errors.Is(err, context.Canceled), isStreamCode(err, 0x8): // CANCEL
		kind = fault.Canceled
	case msg == "client disconnected", msg == "http2: stream closed",
		strings.HasSuffix(msg, "http2: request body closed due to handler exiting"):
		kind = fault.Canceled
	case isStreamCode(err, 0x1) || isStreamCode(err, 0x3) || isStreamCode(err, 0x6):
		// PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR: the client's framing is broken.
		kind = fault.InvalidRequest
	default:
		fe = fault.Classify(fault.Downstream, err)
		if fe.Kind == fault.Unknown {
			fe.Kind = fault.ConnectionClosed
		}
		return fe
	}
	return &fault.Error{Source: fault.Downstream, Kind: kind, Cause: err}
}
