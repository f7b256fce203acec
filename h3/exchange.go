package h3

import (
	"net/http"
	"strconv"

	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// bridge is the HTTP/3 flavour of the shared exchange core: 304 responses carry no
// Content-Length, and Abort also fails blocked reads of the request body.
var bridge = httpbridge.NewProtocol(httpbridge.ProtocolConfig{
	Name:            "h3",
	Version:         "HTTP/3",
	DownstreamError: downstreamError,
	OmitLengthOn304: true,
	AbortReads:      true,
})

// tooEarlyBody is the body of the 425 answer to a non-idempotent request in 0-RTT data.
var tooEarlyBody = []byte("425 Too Early: retry this request after the handshake\n")

// streamHandler is the http.Handler quic-go's HTTP/3 server calls for each request stream.
type streamHandler struct{ st *serverState }

// ServeHTTP converts the stream into an exchange, runs the Server's handler and resets the
// stream when the handler did not finish the exchange.
func (h *streamHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := h.st
	cd, _ := r.Context().Value(connDataKey{}).(*connData)
	if cd == nil {
		panic(http.ErrAbortHandler)
	}
	early := st.quic.Allow0RTT && !handshakeDone(cd)
	if early && !idempotent(r.Method) {
		// RFC 8470 section 5.2: the client retries once the handshake is complete.
		w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(tooEarlyBody))}
		w.WriteHeader(http.StatusTooEarly)
		w.Write(tooEarlyBody)
		return
	}
	fn := *st.srv.handler.Load()
	if fn == nil {
		w.Header()["Content-Type"] = nil
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ex := &exchange{cd: cd}
	ex.Init(bridge, st.logger, w, r, "https", message.HTTP3)
	if early && !ex.Request().Header.Has("early-data") {
		ex.Request().Header.Add("early-data", "1")
	}
	// quic-go cannot tell whether the stream ended with its HEADERS frame without blocking on
	// a read, so a request without Content-Length counts as bodiless when its method usually
	// has no body, and as a streamed body of unknown length otherwise.
	if r.ContentLength == 0 || r.ContentLength < 0 && bodilessMethod(r.Method) {
		ex.Request().ContentLength = 0
	} else {
		ex.AttachBody()
	}
	if ex.Run(ex, fn) {
		// quic-go's server recovers this value without logging and resets the stream.
		panic(http.ErrAbortHandler)
	}
}

// handshakeDone reports whether the connection's handshake has completed; requests seen
// before that arrived in 0-RTT early data.
func handshakeDone(cd *connData) bool {
	select {
	case <-cd.conn.HandshakeComplete():
		return true
	default:
		return false
	}
}

// exchange is one HTTP/3 request stream presented as a message.ServerExchange. Abort resets
// the stream (H3_INTERNAL_ERROR) once the handler returns, and makes blocked and later reads
// and writes fail at once.
type exchange struct {
	httpbridge.Exchange
	cd *connData
}

var (
	_ message.ServerExchange = (*exchange)(nil)
	_ message.InterimWriter  = (*exchange)(nil)
)

// Conn describes the QUIC connection.
func (ex *exchange) Conn() *message.ConnInfo { return &ex.cd.info }

// bodilessMethod reports whether requests with method normally carry no body.
func bodilessMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT":
		return true
	}
	return false
}

// idempotent reports whether method is idempotent (RFC 9110 section 9.2.2): a request with it
// may be replayed, so it is allowed in 0-RTT early data.
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
