package config

import (
	"strings"
	"testing"

	"github.com/verge-edge/verge/htmlrewrite"
)

func TestHTMLRewriteConfig(t *testing.T) {
	c, err := Parse("v.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
upstreams: [{name: app, servers: [{address: "127.0.0.1:9000"}]}]
routes:
  - upstream: app
    html_rewrite:
      - {selector: head, append: "<script src=/x.js></script>"}
      - {selector: "img, video", set_attribute: {loading: lazy}, remove_attribute: [width]}
      - {selector: "#t", set_inner_content: "a<b", text: true}
      - {selector: ".ad", remove: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := HTMLRewriteRules(c.Routes[0].HTMLRewrite)
	if err != nil {
		t.Fatal(err)
	}
	s := rules.NewStream()
	got := string(s.End(s.Rewrite(nil, []byte(`<head></head><img width=3 src=a><p id=t>x</p><div class=ad>y</div>`))))
	want := `<head><script src=/x.js></script></head><img src=a loading="lazy"><p id=t>a&lt;b</p>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var _ *htmlrewrite.Rules = rules
}

func TestHTMLRewriteConfigErrors(t *testing.T) {
	_, err := Parse("v.yaml", []byte(`
listeners: [{address: "127.0.0.1:8080"}]
upstreams: [{name: app, servers: [{address: "127.0.0.1:9000"}]}]
routes:
  - upstream: app
    html_rewrite:
      - {selector: "a:hover", remove: true}
      - {selector: "p"}
      - {append: x}
      - {selector: p, set_attribute: {"a b": c}}
  - respond: {status: 200}
    html_rewrite: [{selector: p, remove: true}]
`))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"routes[0].html_rewrite[0].selector: selector \"a:hover\": pseudo-classes are not supported",
		"routes[0].html_rewrite[1]: no action",
		"routes[0].html_rewrite[2].selector: selector is required",
		`routes[0].html_rewrite[3].set_attribute: invalid attribute name "a b"`,
		"routes[1].html_rewrite: html_rewrite applies to the responses of an upstream or of a cached worker route",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
