package router

import (
	"context"
	"testing"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// nopTransport fails every round trip; matching tests never reach it.
type nopTransport struct{}

func (nopTransport) RoundTrip(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
	return nil, context.Canceled
}

const matchConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: any
    respond: {body: any}
  - name: api-prefix
    match: {path_prefix: /api/}
    respond: {body: api-prefix}
  - name: api-v2-prefix
    match: {path_prefix: /api/v2/}
    respond: {body: api-v2-prefix}
  - name: exact-login
    match: {path: /api/login}
    respond: {body: exact-login}
  - name: post-only
    match: {path_prefix: /api/, methods: [POST, PUT]}
    respond: {body: post-only}
  - name: header
    match: {path_prefix: /api/, headers: {X-Canary: "1"}}
    respond: {body: header}
  - name: header-present
    match: {path_prefix: /feature, headers: {X-Flag: "*"}}
    respond: {body: header-present}
  - name: exact-host
    match: {host: www.example.com}
    respond: {body: exact-host}
  - name: wildcard-host
    match: {host: "*.example.com"}
    respond: {body: wildcard-host}
  - name: deeper-wildcard
    match: {host: "*.eu.example.com", path_prefix: /shop}
    respond: {body: deeper-wildcard}
  - name: multi-host
    match: {host: [a.test, b.test], path: /}
    respond: {body: multi-host}
`

func TestMatch(t *testing.T) {
	in, err := NewInstance(mustConfig(t, matchConfig), Deps{Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(context.Background()) })
	tab := in.handlers["main"].proxy.Phases.(*phases).table
	tests := []struct {
		method, host, target string
		hdr                  []string
		want                 string
	}{
		{"GET", "other.test", "/", nil, "any"},
		{"GET", "other.test", "/api/x", nil, "api-prefix"},
		{"GET", "other.test", "/api/v2/x?q=1", nil, "api-v2-prefix"},
		{"GET", "other.test", "/api/login", nil, "exact-login"},
		{"GET", "other.test", "/api/login?next=/", nil, "exact-login"},
		{"POST", "other.test", "/api/x", nil, "post-only"},
		{"DELETE", "other.test", "/api/x", nil, "api-prefix"},
		{"GET", "other.test", "/api/x", []string{"X-Canary", "1"}, "header"},
		{"GET", "other.test", "/api/x", []string{"X-Canary", "2"}, "api-prefix"},
		{"GET", "other.test", "/feature/a", []string{"X-Flag", "on"}, "header-present"},
		{"GET", "other.test", "/feature/a", nil, "any"},
		{"GET", "www.example.com", "/", nil, "exact-host"},
		{"GET", "WWW.Example.COM:8080", "/", nil, "exact-host"},
		{"GET", "www.example.com.", "/", nil, "exact-host"},
		{"GET", "shop.example.com", "/", nil, "wildcard-host"},
		{"GET", "a.b.example.com", "/", nil, "wildcard-host"},
		{"GET", "x.eu.example.com", "/shop/cart", nil, "deeper-wildcard"},
		{"GET", "x.eu.example.com", "/other", nil, "wildcard-host"},
		{"GET", "example.com", "/", nil, "any"},
		{"GET", "b.test", "/", nil, "multi-host"},
		{"GET", "b.test", "/x", nil, "any"},
	}
	for _, tt := range tests {
		ex := newExchange(tt.method, tt.host, tt.target)
		for i := 0; i+1 < len(tt.hdr); i += 2 {
			ex.req.Header.Add(tt.hdr[i], tt.hdr[i+1])
		}
		r := tab.match(&ex.req)
		got := "<nil>"
		if r != nil {
			got = r.name
		}
		if got != tt.want {
			t.Errorf("%s %s%s %v: got route %s, want %s", tt.method, tt.host, tt.target, tt.hdr, got, tt.want)
		}
	}
}

func TestRespondRedirectAndNotFound(t *testing.T) {
	y := `
listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: hello
    match: {path: /hello}
    respond:
      status: 201
      body: hi
      headers: {X-A: "1"}
    response_headers:
      set: {X-B: "2"}
      remove: [X-A]
  - name: to-https
    match: {host: www.example.com}
    redirect: {to: "https://{host}{uri}", status: 308}
    response_headers:
      add: {Cache-Control: no-store}
`
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(context.Background()) })
	h := in.Handler("main")

	ex := newExchange("GET", "x", "/hello")
	h.ServeExchange(ex)
	if ex.resp.Status != 201 || ex.body.String() != "hi" || ex.resp.Header.Get("X-B") != "2" || ex.resp.Header.Has("X-A") ||
		ex.resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("respond: got %d %q header %v", ex.resp.Status, ex.body.String(), ex.resp.Header.Fields())
	}

	ex = newExchange("GET", "www.example.com:8080", "/a/b?c=d")
	h.ServeExchange(ex)
	if got, want := ex.resp.Header.Get("Location"), "https://www.example.com/a/b?c=d"; ex.resp.Status != 308 || got != want {
		t.Errorf("redirect: got %d Location %q, want 308 %q", ex.resp.Status, got, want)
	}
	if ex.resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("redirect: response header ops not applied: %v", ex.resp.Header.Fields())
	}

	ex = newExchange("GET", "nowhere", "/nothing")
	h.ServeExchange(ex)
	if ex.resp.Status != 404 {
		t.Errorf("unmatched: got %d, want 404", ex.resp.Status)
	}
}

func TestHeaderOps(t *testing.T) {
	ops := compileOps(config.HeaderOps{
		Add:    map[string]string{"X-Add": "a"},
		Set:    map[string]string{"X-Set": "s", "X-Keep": "new"},
		Remove: []string{"X-Drop"},
	})
	var h message.Header
	h.Add("X-Drop", "1")
	h.Add("X-Keep", "old1")
	h.Add("X-Keep", "old2")
	h.Add("X-Add", "first")
	ops.apply(&h)
	if h.Has("X-Drop") {
		t.Error("X-Drop not removed")
	}
	if n := h.Count("X-Keep"); n != 1 || h.Get("X-Keep") != "new" {
		t.Errorf("set: got %d X-Keep = %q, want one \"new\"", n, h.Get("X-Keep"))
	}
	if h.Count("X-Add") != 2 || h.Get("X-Set") != "s" {
		t.Errorf("add/set: %v", h.Fields())
	}
}

func BenchmarkMatch(b *testing.B) {
	in, err := NewInstance(mustConfig(b, matchConfig), Deps{Transport: nopTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close(context.Background())
	tab := in.handlers["main"].proxy.Phases.(*phases).table
	ex := newExchange("GET", "Shop.Example.com", "/api/v2/items?id=1")
	b.ReportAllocs()
	for b.Loop() {
		if tab.match(&ex.req) == nil {
			b.Fatal("no match")
		}
	}
}
