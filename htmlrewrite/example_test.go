package htmlrewrite_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/verge-edge/verge/htmlrewrite"
)

// A script injected into head, lazy images and an escaped greeting, applied to a document
// fed in two chunks that split a tag.
func ExampleRules() {
	rules := htmlrewrite.NewRules().
		On("head", func(e *htmlrewrite.Element) { e.Append(`<script src="/x.js"></script>`, htmlrewrite.HTML) }).
		On("img", func(e *htmlrewrite.Element) { e.SetAttr("loading", "lazy") }).
		On("h1#hi", func(e *htmlrewrite.Element) { e.SetInnerContent("Hello <you>", htmlrewrite.Text) })
	if err := rules.Err(); err != nil {
		panic(err)
	}
	s := rules.NewStream()
	out := s.Rewrite(nil, []byte(`<html><head><title>t</title></head><body><h1 id=hi>x</h1><im`))
	out = s.Rewrite(out, []byte(`g src=a.png></body></html>`))
	out = s.End(out)
	fmt.Println(string(out))
	// Output:
	// <html><head><title>t</title><script src="/x.js"></script></head><body><h1 id=hi>Hello &lt;you&gt;</h1><img src=a.png loading="lazy"></body></html>
}

// Reader rewrites what it reads: here a page streamed to standard output.
func ExampleRules_Reader() {
	rules := htmlrewrite.NewRules().On(".ad", func(e *htmlrewrite.Element) { e.Remove() })
	r := rules.Reader(strings.NewReader(`<p>news</p><div class="ad">buy</div><p>more</p>`))
	defer r.Close()
	os.Stdout.ReadFrom(r)
	// Output:
	// <p>news</p><p>more</p>
}
