package h2

import (
	"net/http"
	"reflect"

	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// noBodyTypeName is the type x/net/http2 uses for a response that ended with its head (END_STREAM
// on HEADERS). Should it change, such responses get an empty Body instead of a nil one,
// which is still correct.
const noBodyTypeName = "http2.noBodyReader"

// newResponse converts x/net/http2's response to the neutral model. x/net/http2 reports -1
// for HEAD; the head's Content-Length is what counts (see httpbridge.NewResponse).
func newResponse(req *message.Request, res *http.Response) *message.Response {
	resp := httpbridge.NewResponse(req, res, message.HTTP2)
	if req.Method == http.MethodHead || reflect.TypeOf(res.Body).String() == noBodyTypeName {
		res.Body.Close()
		return resp
	}
	// Closing a body not read to EOF cancels the stream with RST_STREAM CANCEL.
	body := httpbridge.NewResponseBody(res, resp, upstreamBodyError)
	resp.Body = &body
	return resp
}

// upstreamBodyError classifies an error reading a response body: a *fault.Error from the
// upstream.
func upstreamBodyError(err error) error { return upstreamError(err, false, false) }
