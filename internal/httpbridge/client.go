package httpbridge

import (
	"io"
	"net/http"
	"net/url"
	"sync/atomic"

	"github.com/verge-edge/verge/message"
)

// TargetURL returns the URL an *http.Request needs so that req's target is sent as :path
// verbatim (in Opaque) with scheme and req.Authority. A path starting with "//" would read as
// a scheme-relative URL, so it carries the authority, which the libraries strip again. CONNECT
// has no path. ok is false when req.Target is empty for another method.
func TargetURL(scheme string, req *message.Request) (u *url.URL, ok bool) {
	u = &url.URL{Scheme: scheme, Host: req.Authority}
	if req.Method == http.MethodConnect {
		return u, true
	}
	target := req.Target
	if target == "" {
		return nil, false
	}
	path, query := target, ""
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			path, query = target[:i], target[i+1:]
			u.ForceQuery = query == ""
			break
		}
	}
	if len(path) > 1 && path[0] == '/' && path[1] == '/' {
		path = "//" + req.Authority + path
	}
	u.Opaque, u.RawQuery = path, query
	return u, true
}

// DeclareTrailers adds a nil entry to m, under its canonical key, for each name listed in h's
// Trailer fields.
func DeclareTrailers(m http.Header, h *message.Header) {
	h.Values("trailer", func(v string) bool {
		ForEachToken(v, func(name string) { m[CanonicalName(name)] = nil })
		return true
	})
}

// UploadBody streams a neutral request body to an HTTP library. At EOF it copies the
// request's trailers into the map the library sends them from. It counts bytes read so a
// failed round trip knows whether the body is still intact for a retry.
type UploadBody struct {
	body io.Reader // src.Body, captured: the library may Close after the round trip ended
	src  *message.Request
	dst  http.Header
	read atomic.Int64
	eof  bool
}

// NewUploadBody returns the body for req. trailers is the *http.Request's Trailer map; nil
// when the request announced no trailers, which are then not sent.
func NewUploadBody(req *message.Request, trailers http.Header) *UploadBody {
	return &UploadBody{body: req.Body, src: req, dst: trailers}
}

// BytesRead reports how many body bytes the library has read so far.
func (b *UploadBody) BytesRead() int64 { return b.read.Load() }

func (b *UploadBody) Read(p []byte) (int, error) {
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
			for _, f := range b.src.Trailer.Fields() {
				if SkipField(&b.src.Trailer, &f, false) {
					continue
				}
				k := CanonicalName(f.Name)
				b.dst[k] = append(b.dst[k], f.Value)
			}
		}
	}
	return n, err
}

// Close closes the source body when it is an io.Closer. The libraries call it once the
// request body is done with, whether it was sent in full or not.
func (b *UploadBody) Close() error {
	if c, ok := b.body.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// NewResponse converts res's status, Content-Length and header to a neutral response with
// proto. For a HEAD request, whose res.ContentLength the libraries report as -1, the head's
// Content-Length field counts. The body is left to the caller.
func NewResponse(req *message.Request, res *http.Response, proto string) *message.Response {
	resp := &message.Response{
		Status:        res.StatusCode,
		Proto:         proto,
		ContentLength: res.ContentLength,
	}
	var buf [16]string
	FillFromMap(&resp.Header, res.Header, buf[:0])
	if req.Method == http.MethodHead {
		resp.ContentLength = headContentLength(&resp.Header)
	}
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

// ResponseBody streams res's body and fills resp's Trailer at EOF. Read errors other than
// io.EOF go through Err. Close closes res's body.
type ResponseBody struct {
	res  *http.Response
	resp *message.Response
	err  func(error) error
	done bool
}

// NewResponseBody returns the body of resp read from res; errFn classifies read errors and
// must not be nil.
func NewResponseBody(res *http.Response, resp *message.Response, errFn func(error) error) ResponseBody {
	return ResponseBody{res: res, resp: resp, err: errFn}
}

func (b *ResponseBody) Read(p []byte) (int, error) {
	n, err := b.res.Body.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		if !b.done {
			b.done = true
			var buf [8]string
			FillFromMap(&b.resp.Trailer, b.res.Trailer, buf[:0])
		}
		return n, io.EOF
	}
	return n, b.err(err)
}

// Close closes res's body.
func (b *ResponseBody) Close() error { return b.res.Body.Close() }
