package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/htmlrewrite"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

func TestRewritableHTML(t *testing.T) {
	get := &message.Request{Method: "GET"}
	head := &message.Request{Method: "HEAD"}
	resp := func(status int, fields ...string) *message.Response {
		r := &message.Response{Status: status}
		for i := 0; i+1 < len(fields); i += 2 {
			r.Header.Add(fields[i], fields[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		req  *message.Request
		resp *message.Response
		want bool
	}{
		{get, resp(200, "Content-Type", "text/html; charset=utf-8"), true},
		{get, resp(404, "Content-Type", "TEXT/HTML"), true},
		{get, resp(200, "Content-Type", "text/html", "Content-Encoding", "identity"), true},
		{get, resp(200, "Content-Type", "text/html", "Content-Encoding", "gzip"), false},
		{get, resp(200, "Content-Type", "text/plain"), false},
		{get, resp(200, "Content-Type", "application/xhtml+xml"), false},
		{get, resp(200), false},
		{get, resp(206, "Content-Type", "text/html"), false},
		{get, resp(304, "Content-Type", "text/html"), false},
		{head, resp(200, "Content-Type", "text/html"), false},
	} {
		if got := RewritableHTML(tc.req, tc.resp); got != tc.want {
			t.Errorf("%s %d %v: got %v, want %v", tc.req.Method, tc.resp.Status, tc.resp.Header.Fields(), got, tc.want)
		}
	}
	var h HTMLRewrite
	r := resp(200, "Content-Type", "text/html", "Content-Length", "10", "ETag", `"x"`)
	r.ContentLength = 10
	if !h.Start(htmlrewrite.NewRules(), get, r) || r.ContentLength != -1 || r.Header.Has("Content-Length") || r.Header.Get("ETag") != `W/"x"` {
		t.Errorf("Start: %v %d %v", h.Active(), r.ContentLength, r.Header.Fields())
	}
	h.Release()
}

type htmlCtx struct{ html HTMLRewrite }

type htmlPhases struct {
	Base[htmlCtx]
	rules *htmlrewrite.Rules
}

func (htmlPhases) UpstreamPeer(*Session, *htmlCtx) (*upstream.Peer, error) { return testPeer, nil }
func (p htmlPhases) Response(s *Session, resp *message.Response, c *htmlCtx) error {
	c.html.Start(p.rules, s.Req, resp)
	return nil
}
func (htmlPhases) ResponseBody(_ *Session, chunk []byte, eos bool, c *htmlCtx) ([]byte, error) {
	return c.html.Body(chunk, eos), nil
}
func (htmlPhases) Logging(_ *Session, _ *fault.Error, c *htmlCtx) { c.html.Release() }

// htmlTransport replays an HTML page.
type htmlTransport struct {
	resp message.Response
	body cannedBody
}

func (t *htmlTransport) RoundTrip(_ context.Context, _ *upstream.Peer, _ *message.Request) (*message.Response, error) {
	t.resp.Reset()
	t.resp.Status = 200
	t.resp.Proto = message.HTTP11
	t.resp.ContentLength = int64(len(t.body.data))
	t.resp.Header.Add("Content-Type", "text/html; charset=utf-8")
	t.resp.Body = &t.body
	return &t.resp, nil
}

func htmlPage(articles int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!DOCTYPE html><html><head><title>t</title></head><body>`)
	for i := 0; i < articles; i++ {
		fmt.Fprintf(&b, `<article class="item"><a href="/items/%d">Item %d</a><img src="/i/%d.jpg" alt="p"><p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p></article>`+"\n", i, i, i)
	}
	b.WriteString(`</body></html>`)
	return b.Bytes()
}

// TestEngineHTMLRewrite runs HTMLRewrite as the phases' body filter.
func TestEngineHTMLRewrite(t *testing.T) {
	rules := htmlrewrite.NewRules().
		On("head", func(e *htmlrewrite.Element) { e.Append("<script src=/x.js></script>", htmlrewrite.HTML) }).
		On("img", func(e *htmlrewrite.Element) { e.SetAttr("loading", "lazy") })
	p := &Proxy[htmlCtx]{Phases: htmlPhases{rules: rules}, Transport: &htmlTransport{body: cannedBody{data: htmlPage(2000)}}, BodyBufferSize: 4096}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:4000")}}
	var out bytes.Buffer
	w := &captureExchange{benchExchange: ex, out: &out}
	ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto = "GET", "/", "example.test", message.HTTP11
	p.ServeExchange(w)
	got := out.String()
	if !strings.Contains(got, "<script src=/x.js></script></head>") || strings.Count(got, `loading="lazy"`) != 2000 {
		t.Fatalf("rewritten body (%d bytes) lacks the changes", len(got))
	}
}

type captureExchange struct {
	*benchExchange
	out *bytes.Buffer
}

func (e *captureExchange) Write(p []byte) (int, error) { return e.out.Write(p) }

// BenchmarkEngineHTMLRewrite is the engine proxying a 128 KiB HTML page through the
// HTMLRewrite body filter (two rules), codecs and network faked: the rewriter's cost and
// allocations per request on the proxy path. BenchmarkEngineHTMLPassThrough is the same page
// without rules.
func BenchmarkEngineHTMLRewrite(b *testing.B) {
	rules := htmlrewrite.NewRules().
		On("head", func(e *htmlrewrite.Element) { e.Append("<script src=/x.js></script>", htmlrewrite.HTML) }).
		On("img", func(e *htmlrewrite.Element) { e.SetAttr("loading", "lazy") })
	benchHTML(b, rules)
}

func BenchmarkEngineHTMLPassThrough(b *testing.B) { benchHTML(b, nil) }

func benchHTML(b *testing.B, rules *htmlrewrite.Rules) {
	page := htmlPage(780) // about 128 KiB
	p := &Proxy[htmlCtx]{Phases: htmlPhases{rules: rules}, Transport: &htmlTransport{body: cannedBody{data: page}}}
	ex := &benchExchange{info: message.ConnInfo{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:4000")}}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		ex.req.Reset()
		ex.req.Method, ex.req.Target, ex.req.Authority, ex.req.Proto = "GET", "/", "example.test", message.HTTP11
		p.ServeExchange(ex)
	}
}
