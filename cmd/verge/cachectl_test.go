package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/upstream"
)

// TestPurgeThroughAdminAPI caches responses through a config-built runtime and purges them by
// URL, prefix and tag through the admin API; a counting origin shows what was purged.
func TestPurgeThroughAdminAPI(t *testing.T) {
	var n atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "k"+strings.ReplaceAll(r.URL.Path, "/", "-"))
		io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(o.Close)
	c, base := cachedRuntime(t, o.URL, "")
	adm := &admin.Server{Addr: "127.0.0.1:0", Controller: &serverProc{cache: c}, Logger: slog.New(slog.DiscardHandler)}
	if err := adm.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Shutdown(context.Background()) })
	admURL := "http://" + adm.ListenAddr().String() + "/cache/purge"

	get := func(path string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	purge := func(body, want string) {
		t.Helper()
		resp, err := http.Post(admURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) != want {
			t.Fatalf("purge %s: got %s, want %s", body, b, want)
		}
	}
	paths := []string{"/a", "/img/1", "/img/2", "/css/x"}
	for _, p := range paths {
		get(p)
		get(p)
	}
	if n.Load() != 4 {
		t.Fatalf("origin saw %d requests, want 4 (second round cached)", n.Load())
	}
	host := strings.TrimPrefix(base, "http://")
	for _, rel := range []string{`{"urls":["/a"]}`, `{"prefixes":["/img/"]}`} {
		resp, err := http.Post(admURL, "application/json", strings.NewReader(rel))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("purge %s: status %d, want 400", rel, resp.StatusCode)
		}
	}
	purge(`{"urls":["http://`+host+`/a"]}`, `{"purged":1,"memory":1,"disk":0}`)
	purge(`{"prefixes":["http://`+host+`/img/"]}`, `{"purged":2,"memory":2,"disk":0}`)
	purge(`{"tags":["k-css-x"]}`, `{"purged":1,"memory":1,"disk":0}`)
	for _, p := range paths {
		get(p)
	}
	if n.Load() != 8 {
		t.Fatalf("origin saw %d requests, want 8 (all purged)", n.Load())
	}
	purge(`{"all":true}`, `{"purged":4,"memory":4,"disk":0}`)
	for _, p := range paths {
		get(p)
	}
	if n.Load() != 12 {
		t.Fatalf("origin saw %d requests, want 12 (all purged)", n.Load())
	}
}

// TestDiskOnlyRevalidationEndToEnd is the reported disk-tier corruption, run from a config
// over loopback: a 10 MiB body (over memory_max_object, so on disk only) with an ETag and
// max-age=0, revalidated on every request by an origin whose 304s make the stored head longer
// and then shorter. Every response, the revalidating ones included, must carry the exact body.
func TestDiskOnlyRevalidationEndToEnd(t *testing.T) {
	body := make([]byte, 10<<20)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	var n atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("ETag", `"big"`)
		if r.Header.Get("If-None-Match") == `"big"` {
			// Grow the head for a while, then shrink it.
			size := int(k) * 300
			if k > 3 {
				size = 1
			}
			w.Header().Set("X-Extra", strings.Repeat("x", size))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(o.Close)
	c, base := cachedRuntime(t, o.URL, fmt.Sprintf("cache: {memory_size: 4MiB, memory_max_object: 64KiB, disk: {path: %s, size: 64MiB}}\n", t.TempDir()))
	url := base + "/big.bin"
	for i := range 6 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) || string(got) != string(body) {
			head := got[:min(len(got), 40)]
			t.Fatalf("request %d: status %d, Content-Length %d, %d bytes starting %q (Cache-Status %q)",
				i, resp.StatusCode, resp.ContentLength, len(got), head, resp.Header.Get("Cache-Status"))
		}
		if i > 0 && !strings.Contains(resp.Header.Get("Cache-Status"), "fwd-status=304") {
			t.Fatalf("request %d: Cache-Status %q, want a revalidation", i, resp.Header.Get("Cache-Status"))
		}
	}
	if mem, _ := c.Usage(); mem > 1<<20 {
		t.Fatalf("memory tier holds %d bytes: the object was not disk-only", mem)
	}
}

// cachedRuntime runs a config-built runtime with a cache in front of the origin at originURL,
// listening on loopback; extra is added to the config (a cache: section). It returns the
// cache and the runtime's base URL.
func cachedRuntime(t *testing.T, originURL, extra string) (*cache.Cache, string) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
%sroutes: [{upstream: app, cache: {}}]
upstreams: [{name: app, servers: [{address: %s}]}]
`, extra, strings.TrimPrefix(originURL, "http://"))))
	if err != nil {
		t.Fatal(err)
	}
	m := observe.NewMetrics()
	c, err := newCache(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := router.NewRuntime(router.Options{Deps: router.Deps{Transport: tr, Store: lb.NewStateStore(), Cache: c, Metrics: m}})
	if err := rt.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return c, "http://" + rt.Addr("main").String()
}
