package proxy

import (
	"strings"
	"sync"

	"github.com/verge-edge/verge/htmlrewrite"
	"github.com/verge-edge/verge/message"
)

// HTMLRewrite applies htmlrewrite.Rules to HTML responses as a body filter, streaming: keep
// one in the per-request context C and call it from three phases.
//
//	func (p *P) Response(s *proxy.Session, resp *message.Response, c *Ctx) error {
//		c.html.Start(p.rules, s.Req, resp)
//		return nil
//	}
//	func (p *P) ResponseBody(s *proxy.Session, chunk []byte, eos bool, c *Ctx) ([]byte, error) {
//		return c.html.Body(chunk, eos), nil
//	}
//	func (p *P) Logging(s *proxy.Session, err *fault.Error, c *Ctx) { c.html.Release() }
//
// The zero value is ready; a stream is taken from a pool by Start and returned by Release.
type HTMLRewrite struct {
	st   *htmlState
	pool *sync.Pool
}

// htmlState is a stream and its output buffer, pooled per Rules.
type htmlState struct {
	s   *htmlrewrite.Stream
	out []byte
}

var htmlStreams sync.Map // *htmlrewrite.Rules -> *sync.Pool of *htmlState

// Start decides whether resp is rewritten and, if so, prepares its head: it applies to a
// text/html response with a body (not to HEAD, 1xx, 204, 206 or 304) and without a
// Content-Encoding other than identity (an encoded body passes unchanged: have the origin
// send identity, e.g. by removing Accept-Encoding from the upstream request). The length
// changes, so Content-Length is removed (chunked framing, or HTTP/2 and HTTP/3 data frames)
// and a strong ETag becomes weak (RFC 9110 section 8.8.1: the bytes differ). It reports
// whether the body will be rewritten.
func (h *HTMLRewrite) Start(rules *htmlrewrite.Rules, req *message.Request, resp *message.Response) bool {
	if rules == nil || !RewritableHTML(req, resp) {
		return false
	}
	p, ok := htmlStreams.Load(rules)
	if !ok {
		p, _ = htmlStreams.LoadOrStore(rules, &sync.Pool{New: func() any { return &htmlState{s: rules.NewStream()} }})
	}
	h.pool = p.(*sync.Pool)
	h.st = h.pool.Get().(*htmlState)
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	if et, ok := resp.Header.Lookup("ETag"); ok && !strings.HasPrefix(et, "W/") {
		resp.Header.Set("ETag", "W/"+et)
	}
	resp.Header.Del("Content-MD5")
	return true
}

// RewritableHTML reports whether resp, the answer to req, is an HTML body HTMLRewrite may
// rewrite (see Start).
func RewritableHTML(req *message.Request, resp *message.Response) bool {
	if req.Method == "HEAD" || resp.Status < 200 || resp.Status == 204 || resp.Status == 206 || resp.Status == 304 {
		return false
	}
	if ce, ok := resp.Header.Lookup("Content-Encoding"); ok && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return false
	}
	ct := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "text/html")
}

// Active reports whether the current response is being rewritten.
func (h *HTMLRewrite) Active() bool { return h.st != nil }

// Body returns the rewritten form of the next chunk (chunk itself when the response is not
// rewritten). The result is valid until the next call.
func (h *HTMLRewrite) Body(chunk []byte, eos bool) []byte {
	st := h.st
	if st == nil {
		return chunk
	}
	st.out = st.s.Rewrite(st.out[:0], chunk)
	if eos {
		st.out = st.s.End(st.out)
	}
	return st.out
}

// Release returns the stream to its pool. Call it once the response ended (Logging); the
// slice Body returned last is then no longer valid.
func (h *HTMLRewrite) Release() {
	st := h.st
	if st == nil {
		return
	}
	h.st = nil
	st.s.Reset()
	if cap(st.out) > 256<<10 {
		st.out = nil
	}
	h.pool.Put(st)
}
