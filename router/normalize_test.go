package router

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNormalizePath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"/%69nternal", "/internal"},
		{"/%49NTERNAL", "/INTERNAL"},
		{"/x/../internal", "/internal"},
		{"/x/%2e%2e/internal", "/internal"},
		{"/x/%2E./internal", "/internal"},
		{"/./internal", "/internal"},
		{"//internal", "/internal"},
		{"/a//b///c", "/a/b/c"},
		{"/../../internal", "/internal"},
		{"/a/b/..", "/a/"},
		{"/a/.", "/a/"},
		{"/a/", "/a/"},
		{"//", "/"},
		{"/..", "/"},
		{"/a%2fb", "/a%2Fb"},           // an encoded slash is not a separator
		{"/a%2F..%2Fb", "/a%2F..%2Fb"}, // nor are dots inside one segment
		{"/a%20b", "/a%20b"},
		{"/%7euser", "/~user"},
		{"/100%", "/100%"},
		{"/%zz", "/%zz"},
		{"/a/.hidden/..x", "/a/.hidden/..x"},
	} {
		if !needsNormalizing(c.in) && c.in != c.want {
			t.Errorf("needsNormalizing(%q) = false", c.in)
		}
		var scratch [2 * maxStackPath]byte
		if got := normalizePath(c.in, scratch[:]); got != c.want {
			t.Errorf("normalizePath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, p := range []string{"/", "/api/v2/items", "/a.b/c-d_e~f", "*", ""} {
		if needsNormalizing(p) {
			t.Errorf("needsNormalizing(%q) = true", p)
		}
	}
	long := "/" + strings.Repeat("a/", 600) + "%69" // past the stack buffer
	var scratch [2 * maxStackPath]byte
	if got, want := normalizePath(long, scratch[:]), "/"+strings.Repeat("a/", 600)+"i"; got != want {
		t.Errorf("long path: got %d bytes, want %d", len(got), len(want))
	}
}

// TestEncodedPathCannotBypassRoute attacks a route that refuses a path (403) in front of a
// catch-all upstream whose origin, like most, decodes the path and resolves dot segments and
// repeated slashes: spelling /internal differently must still hit the refusing route, and
// the origin must never serve it.
func TestEncodedPathCannotBypassRoute(t *testing.T) {
	var internal atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean(r.URL.Path) // decoded by net/http; dot segments and slashes resolved here
		if p == "/internal" || strings.HasPrefix(p, "/admin/") {
			internal.Add(1)
			fmt.Fprint(w, "SECRET")
			return
		}
		fmt.Fprint(w, "public "+p)
	}))
	t.Cleanup(o.Close)
	_, base := startRuntime(t, fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: internal
    match: {path: /internal}
    respond: {status: 403, body: refused}
  - name: admin
    match: {path_prefix: /admin/}
    respond: {status: 403, body: refused}
  - name: home
    match: {path: /%%7Euser}
    respond: {status: 200, body: home}
  - name: default
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
`, strings.TrimPrefix(o.URL, "http://")))
	addr := strings.TrimPrefix(base, "http://")
	get := func(target string) (int, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, b.String()
	}
	for _, target := range []string{
		"/internal", "/%69nternal", "/%69%6E%74%65%72%6E%61%6C", "/x/../internal", "/x/%2e%2e/internal",
		"/./internal", "//internal", "/internal?x=1", "/%2e/internal",
		"/admin/x", "/%61dmin/x", "//admin//x", "/public/../admin/x", "/admin%2fx/../../admin/x",
	} {
		if code, body := get(target); code != 403 || body != "refused" {
			t.Errorf("GET %s = %d %q, want the refusing route's 403", target, code, body)
		}
	}
	// An encoded slash next to dot segments means one path here and another at an origin
	// that decodes it first: such a path matches no route.
	for _, target := range []string{"/public%2F..%2F..%2Finternal", "/x%2f..%2finternal", "/a%2F%2E%2E%2Finternal", "/a%5C..%5Cinternal"} {
		if code, body := get(target); code != 404 {
			t.Errorf("GET %s = %d %q, want 404", target, code, body)
		}
	}
	if n := internal.Load(); n != 0 {
		t.Fatalf("the origin served the refused paths %d times", n)
	}
	// Ordinary paths and encodings still reach the origin; a route written encoded matches
	// the decoded spelling and the reverse.
	if code, body := get("/files/a%20b.txt"); code != 200 || body != "public /files/a b.txt" {
		t.Errorf("encoded space: %d %q", code, body)
	}
	if code, body := get("/projects/group%2Fproject/x"); code != 200 || body != "public /projects/group/project/x" {
		t.Errorf("encoded slash without dot segments: %d %q", code, body)
	}
	for _, target := range []string{"/~user", "/%7Euser", "/%7euser"} {
		if code, body := get(target); code != 200 || body != "home" {
			t.Errorf("GET %s = %d %q, want the /%%7Euser route", target, code, body)
		}
	}
}

func BenchmarkMatchEncodedPath(b *testing.B) {
	in, err := NewInstance(mustConfig(b, matchConfig), Deps{Transport: nopTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close(context.Background())
	tab := in.handlers["main"].proxy.Phases.(*phases).table
	ex := newExchange("GET", "Shop.Example.com", "/api/v2/../v2/%69tems?id=1")
	b.ReportAllocs()
	for b.Loop() {
		if tab.match(&ex.req) == nil {
			b.Fatal("no match")
		}
	}
}
