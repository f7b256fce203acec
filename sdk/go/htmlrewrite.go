package sdk

import (
	"strings"

	"github.com/verge-edge/verge/htmlrewrite"
)

// Element is an HTML element matched by an HTMLRewriter selector (see htmlrewrite.Element).
type Element = htmlrewrite.Element

// Content types of inserted content: Text is escaped, HTML is inserted as markup.
const (
	Text = htmlrewrite.Text
	HTML = htmlrewrite.HTML
)

// HTMLRewriter rewrites HTML responses as they stream, like Cloudflare's HTMLRewriter: the
// document is never held whole, so a page of any size passes in bounded memory. It runs in
// the worker, on the worker's CPU time.
//
//	rw := sdk.NewHTMLRewriter().
//		On("head", func(e *sdk.Element) { e.Append(`<script src="/x.js"></script>`, sdk.HTML) }).
//		On("a[href]", func(e *sdk.Element) { e.SetAttr("rel", "nofollow") })
//	resp, _ := sdk.Fetch(req)
//	out, err := rw.Transform(resp)
//
// Selectors and the Element methods are those of package htmlrewrite (docs/workers.md,
// "HTML rewriting").
type HTMLRewriter struct{ rules *htmlrewrite.Rules }

// NewHTMLRewriter returns a rewriter without handlers.
func NewHTMLRewriter() *HTMLRewriter { return &HTMLRewriter{rules: htmlrewrite.NewRules()} }

// On adds a handler for the elements matching selector. An invalid selector makes Transform
// fail.
func (r *HTMLRewriter) On(selector string, h func(e *Element)) *HTMLRewriter {
	r.rules.On(selector, h)
	return r
}

// Transform returns resp with its body rewritten as it is read, when resp is HTML
// (Content-Type text/html) without a Content-Encoding; other responses are returned as they
// are. The rewritten response has no Content-Length, and a strong ETag becomes weak.
func (r *HTMLRewriter) Transform(resp *Response) (*Response, error) {
	if err := r.rules.Err(); err != nil {
		return nil, err
	}
	ct := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	if !strings.EqualFold(strings.TrimSpace(ct), "text/html") || resp.Body == nil {
		return resp, nil
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return resp, nil
	}
	out := &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: r.rules.Reader(resp.Body)}
	out.Header.Del("Content-Length")
	if et := out.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		out.Header.Set("ETag", "W/"+et)
	}
	return out, nil
}
