package h2

import (
	"io"
	"net/http"
	"reflect"
	"sync/atomic"

	"github.com/verge-edge/verge/message"
)

// uploadBody streams a neutral request body to x/net/http2. At EOF it copies the request's
// trailers into the map x/net/http2 sends them from. It counts bytes read so a failed round
// trip knows whether the body is still intact for a retry.
type uploadBody struct {
	body io.Reader // src.Body, captured: x/net/http2 may Close after the round trip ended
	src  *message.Request
	dst  http.Header // nil when the request announced no trailers
	read atomic.Int64
	eof  bool
}

func (b *uploadBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if n > 0 {
		b.read.Add(int64(n))
	}
	if err == io.EOF {
		b.eof = true
		if b.dst != nil {
			conn := false
			for _, f := range b.src.Trailer.Fields() {
				if skipOnH2(&b.src.Trailer, &f, conn) {
					continue
				}
				k := canonicalName(f.Name)
				b.dst[k] = append(b.dst[k], f.Value)
			}
		}
	}
	return n, err
}

// Close closes the source body when it is an io.Closer. x/net/http2 calls it once the
// request body is done with, whether it was sent in full or not.
func (b *uploadBody) Close() error {
	if c, ok := b.body.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// noBodyTypeName is the type x/net/http2 uses for a response that ended with its head (END_STREAM
// on HEADERS). Should it change, such responses get an empty Body instead of a nil one,
// which is still correct.
const noBodyTypeName = "http2.noBodyReader"

// newResponse converts x/net/http2's response to the neutral model.
func newResponse(req *message.Request, res *http.Response) *message.Response {
	resp := &message.Response{
		Status:        res.StatusCode,
		Proto:         message.HTTP2,
		ContentLength: res.ContentLength,
	}
	var buf [16]string
	fillFromMap(&resp.Header, res.Header, buf[:0])
	if req.Method == http.MethodHead || reflect.TypeOf(res.Body).String() == noBodyTypeName {
		res.Body.Close()
		if req.Method == http.MethodHead {
			// x/net/http2 reports -1 for HEAD; the head's Content-Length is what counts.
			resp.ContentLength = headContentLength(&resp.Header)
		}
		return resp
	}
	resp.Body = &responseBody{res: res, resp: resp}
	return resp
}

// headContentLength returns the Content-Length field's value, or -1.
func headContentLength(h *message.Header) int64 {
	v, ok := h.Lookup("content-length")
	if !ok || v == "" {
		return -1
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// responseBody streams the response body and fills the response's Trailer at EOF. Errors
// are *fault.Error from the upstream.
type responseBody struct {
	res  *http.Response
	resp *message.Response
	done bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.res.Body.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		if !b.done {
			b.done = true
			var buf [8]string
			fillFromMap(&b.resp.Trailer, b.res.Trailer, buf[:0])
		}
		return n, io.EOF
	}
	return n, upstreamError(err, false, false)
}

// Close ends the stream: a body not read to EOF is canceled with RST_STREAM CANCEL.
func (b *responseBody) Close() error { return b.res.Body.Close() }
