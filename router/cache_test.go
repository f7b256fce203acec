package router

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

// TestRouteCaching runs caching end to end from a config: a loopback origin that counts its
// requests, one cached route with key and bypass rules, one route without caching.
func TestRouteCaching(t *testing.T) {
	var n atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page "+r.URL.Path)
	}))
	t.Cleanup(o.Close)
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: static
    match: {path_prefix: /static/}
    upstream: app
    cache:
      key: {exclude_query: [utm]}
      bypass: {cookies: [session]}
  - name: dynamic
    upstream: app
upstreams:
  - name: app
    servers: [{address: %s}]
`, strings.TrimPrefix(o.URL, "http://"))
	rt := startCached(t, y)
	base := "http://" + rt.Addr("main").String()

	fetch := func(path string, hdr ...string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.Header.Get("Cache-Status")
	}
	fetch("/static/a.css?utm=1")
	body, cs := fetch("/static/a.css?utm=2")
	if body != "page /static/a.css" || !strings.HasPrefix(cs, "verge; hit") || n.Load() != 1 {
		t.Fatalf("got %q, Cache-Status %q, origin %d; want a hit", body, cs, n.Load())
	}
	if _, cs := fetch("/static/a.css", "Cookie", "session=1"); cs != "verge; fwd=bypass" || n.Load() != 2 {
		t.Fatalf("bypass: Cache-Status %q, origin %d", cs, n.Load())
	}
	fetch("/other")
	if _, cs := fetch("/other"); cs != "" || n.Load() != 4 {
		t.Fatalf("uncached route: Cache-Status %q, origin %d; want no caching", cs, n.Load())
	}
}

// TestRouteCacheUseStaleAndTargetedField runs use_stale and targeted_field from a config: the
// route's own targeted field makes a no-store response storable (and is removed before the
// client sees it); when the origin then answers 503, the stale response is served.
func TestRouteCacheUseStaleAndTargetedField(t *testing.T) {
	for i, c := range config.CacheUseStaleConditions {
		if i >= len(cache.UseStaleConditions) || cache.UseStaleConditions[i] != c {
			t.Fatalf("config and cache use_stale conditions differ: %q vs %q", config.CacheUseStaleConditions, cache.UseStaleConditions)
		}
	}
	var n atomic.Int64
	var down atomic.Bool
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if down.Load() {
			w.WriteHeader(503)
			io.WriteString(w, "down")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Acme-Cache-Control", "max-age=0")
		w.Header().Set("ETag", `"1"`)
		io.WriteString(w, "page")
	}))
	t.Cleanup(o.Close)
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - upstream: app
    cache: {use_stale: [http_503], targeted_field: Acme-Cache-Control}
upstreams:
  - name: app
    servers: [{address: %s}]
`, strings.TrimPrefix(o.URL, "http://"))
	rt := startCached(t, y)
	get := func() (*http.Response, string) {
		t.Helper()
		resp, err := http.Get("http://" + rt.Addr("main").String() + "/s")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get()
	if resp.StatusCode != 200 || body != "page" || resp.Header.Get("Acme-Cache-Control") != "" {
		t.Fatalf("first: %d %q, Acme-Cache-Control %q", resp.StatusCode, body, resp.Header.Get("Acme-Cache-Control"))
	}
	down.Store(true)
	resp, body = get()
	if resp.StatusCode != 200 || body != "page" || n.Load() != 2 {
		t.Fatalf("origin down: got %d %q after %d origin requests, want the stale 200 after 2 (Cache-Status %q)",
			resp.StatusCode, body, n.Load(), resp.Header.Get("Cache-Status"))
	}
}

// startCached runs the config y on a runtime with a 1 MiB memory cache.
func startCached(t *testing.T, y string) *Runtime {
	t.Helper()
	c, err := cache.New(cache.Options{MemorySize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), Cache: c}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}
