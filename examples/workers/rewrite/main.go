// Command rewrite shows the HTML rewriter in a worker: it fetches a page (or makes one) and
// streams it to the client rewritten, never holding the document.
//
//	verge dev examples/workers/rewrite
//	curl localhost:8787/page?items=3
//
// The page gets a script injected at the end of head, loading="lazy" on every image,
// rel="nofollow noopener" on external links, its elements of class "ad" removed, and the
// text of #greeting replaced (escaped). With ORIGIN set in the environment (and allowed by
// fetch.allow), /proxy/<path> rewrites ORIGIN/<path> instead.
package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var rewriter = sdk.NewHTMLRewriter().
	On("head", func(e *sdk.Element) { e.Append(`<script src="/analytics.js" defer></script>`, sdk.HTML) }).
	On("img", func(e *sdk.Element) { e.SetAttr("loading", "lazy") }).
	On(`a[href^="http"]`, func(e *sdk.Element) { e.SetAttr("rel", "nofollow noopener") }).
	On(".ad", func(e *sdk.Element) { e.Remove() }).
	On("#greeting", func(e *sdk.Element) { e.SetInnerContent("Hello <from> the edge & co", sdk.Text) })

// page streams a generated page of n items, so that a large page is never in memory.
func page(n int) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		fmt.Fprint(pw, `<!DOCTYPE html><html><head><title>Items</title></head><body><h1 id="greeting">hi</h1>`)
		for i := 0; i < n; i++ {
			fmt.Fprintf(pw, `<div class="item"><a href="https://example.com/%d">item %d</a><img src="/i/%d.png"></div>`+"\n", i, i, i)
			if i%10 == 0 {
				fmt.Fprint(pw, `<div class="ad">buy now</div>`)
			}
		}
		fmt.Fprint(pw, `</body></html>`)
		pw.Close()
	}()
	return pr
}

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		var resp *sdk.Response
		switch p := r.Path(); {
		case strings.HasPrefix(p, "/proxy/") && sdk.Env("ORIGIN") != "":
			req, err := sdk.NewRequest("GET", sdk.Env("ORIGIN")+strings.TrimPrefix(p, "/proxy"), nil)
			if err == nil {
				resp, err = sdk.Fetch(req)
			}
			if err != nil {
				sdk.ErrorResponse(w, err.Error(), 502)
				return
			}
		default:
			n, _ := strconv.Atoi(r.URL().Query().Get("items"))
			resp = &sdk.Response{StatusCode: 200, Body: page(max(n, 1))}
			resp.Header.Set("Content-Type", "text/html; charset=utf-8")
		}
		out, err := rewriter.Transform(resp)
		if err != nil {
			sdk.ErrorResponse(w, err.Error(), 500)
			return
		}
		for _, f := range out.Header.Fields() {
			w.Header().Add(f.Name, f.Value)
		}
		w.WriteHeader(out.StatusCode)
		io.Copy(w, out.Body)
		out.Body.Close()
	})
}

func main() {}
