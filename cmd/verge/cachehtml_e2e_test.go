package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// httpGet sends one GET with the given header fields (name, value, ...) and returns the
// response with its body read.
func httpGet(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, string(b)
}

// TestRunCacheAPIAndCachedWorkerRoute runs `verge run` with two workers of the same module
// (a and b) and a cached worker route: a's Cache API entries are served again (with 304
// and 206), b (a hostile tenant) can neither read nor delete them, and the route that
// caches its worker's responses serves them from the cache until an admin purge.
func TestRunCacheAPIAndCachedWorkerRoute(t *testing.T) {
	mod := testwasm.BuildFile(t, "examples/workers/cache")
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
routes:
  - {name: a, match: {host: a.test}, worker: a}
  - {name: b, match: {host: b.test}, worker: b}
  - {name: cached, match: {host: c.test}, worker: a, cache: {}}
workers:
  - {name: a, module: %q, limits: {cpu_time: 10s, max_instances: 1}}
  - {name: b, module: %q, limits: {cpu_time: 10s, max_instances: 1}}
`, p.addr, adminAddr, p.pidFile, mod, mod)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(host, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		return httpGet(t, c, "http://"+p.addr+path, append([]string{"Host", host}, hdr...)...)
	}
	// http.Client sends Host from req.Host, not from the header map.
	c.Transport = hostTransport{}
	waitFor(t, "verge run to serve the workers", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/api/ready#a.test")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	r1, b1 := get("a.test", "/api/x")
	r2, b2 := get("a.test", "/api/x")
	if r1.Header.Get("X-Cache") != "MISS" || r2.Header.Get("X-Cache") != "HIT" || b1 != b2 {
		t.Fatalf("Cache API: first %s %q, second %s %q; want MISS then HIT with the same body", r1.Header.Get("X-Cache"), b1, r2.Header.Get("X-Cache"), b2)
	}
	etag := r1.Header.Get("ETag")
	if r, _ := get("a.test", "/api/x", "If-None-Match", etag); r.StatusCode != 304 {
		t.Errorf("conditional Match: status %d, want 304", r.StatusCode)
	}
	if r, body := get("a.test", "/api/x", "Range", "bytes=0-7"); r.StatusCode != 206 || body != b1[:8] {
		t.Errorf("range Match: %d %q, want 206 %q", r.StatusCode, body, b1[:8])
	}
	// A named cache holds its own entries.
	if r, _ := get("a.test", "/named/n1/api/x"); r.Header.Get("X-Cache") != "MISS" {
		t.Errorf("named cache shares the default cache's entry")
	}
	// Worker b probes and deletes a's entry by its exact URL: nothing.
	target := "http://a.test/api/x"
	if r, body := get("b.test", "/probe?url="+target); r.StatusCode != 404 {
		t.Errorf("worker b read worker a's entry: %d %q", r.StatusCode, body)
	}
	if _, body := doMethod(t, c, "DELETE", "http://"+p.addr+"/probe?url="+target+"#b.test"); !strings.Contains(body, "deleted: false") {
		t.Errorf("worker b deleted worker a's entry: %q", body)
	}
	if r, _ := get("a.test", "/api/x"); r.Header.Get("X-Cache") != "HIT" {
		t.Errorf("a's entry gone after b's attempts")
	}
	// The Cache API metrics count a's hits, per worker. The admin API starts after the first
	// config is applied: wait for it.
	waitFor(t, "the admin API", 60*time.Second, func() bool {
		r, err := http.Get("http://" + adminAddr + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	if mresp, err := http.Get("http://" + adminAddr + "/metrics"); err != nil {
		t.Error(err)
	} else {
		mb, _ := io.ReadAll(mresp.Body)
		mresp.Body.Close()
		if !strings.Contains(string(mb), `verge_worker_cache_operations_total{op="match",result="hit",worker="a"}`) ||
			!strings.Contains(string(mb), `verge_worker_cache_operations_total{op="delete",result="absent",worker="b"} 1`) {
			t.Errorf("metrics lack the Cache API counters")
		}
	}
	// a itself deletes it.
	if _, body := doMethod(t, c, "DELETE", "http://"+p.addr+"/api/x#a.test"); !strings.Contains(body, "deleted: true") {
		t.Errorf("a's delete: %q", body)
	}

	// The cached worker route: the worker's response is stored and served again.
	r1, b1 = get("c.test", "/origin/page")
	r2, b2 = get("c.test", "/origin/page")
	if b1 != b2 || !strings.Contains(r2.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("cached worker route: %q then %q (Cache-Status %q, %q)", b1, b2, r1.Header.Get("Cache-Status"), r2.Header.Get("Cache-Status"))
	}
	// The proxy's entry for c.test is not in the worker's Cache API namespace.
	if r, _ := get("a.test", "/probe?url=http://c.test/origin/page"); r.StatusCode != 404 {
		t.Errorf("the route's cached response is visible through the Cache API")
	}
	// An admin purge of the URL, as for an upstream route.
	resp, err := http.Post("http://"+adminAddr+"/cache/purge", "application/json", strings.NewReader(`{"urls":["http://c.test/origin/page"]}`))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("purge: %d %s", resp.StatusCode, pb)
	}
	if _, b3 := get("c.test", "/origin/page"); b3 == b1 {
		t.Errorf("after purge: still %q", b3)
	}
}

// hostTransport sends a request's URL fragment as its Host (the tests reach several
// virtual hosts on one listener).
type hostTransport struct{}

func (hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h := r.Header.Get("Host"); h != "" {
		r.Host = h
		r.Header.Del("Host")
	}
	if r.URL.Fragment != "" {
		r.Host = r.URL.Fragment
		r.URL.Fragment = ""
	}
	return http.DefaultTransport.RoundTrip(r)
}

func doMethod(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunHTMLRewriteRoute injects a script and lazy images into an upstream's pages from
// YAML (html_rewrite), through `verge run`: Content-Length is dropped, gzip bodies and
// other types pass unchanged.
func TestRunHTMLRewriteRoute(t *testing.T) {
	page := `<!DOCTYPE html><html><head><title>x</title></head><body><img src=a.png><p>hi</p></body></html>`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(page))
	zw.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gz":
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, page)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Length", fmt.Sprint(len(page)))
			w.Header().Set("ETag", `"p1"`)
			io.WriteString(w, page)
		}
	}))
	t.Cleanup(origin.Close)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
upstreams: [{name: app, servers: [{address: %q}]}]
routes:
  - name: site
    upstream: app
    html_rewrite:
      - {selector: head, append: "<script src=/x.js></script>"}
      - {selector: img, set_attribute: {loading: lazy}}
      - {selector: "body > p", set_inner_content: "<b>&</b>", text: true}
`, p.addr, p.pidFile, strings.TrimPrefix(origin.URL, "http://"))
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	waitFor(t, "verge run to serve", 30*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/text")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, body := httpGet(t, c, "http://"+p.addr+"/")
	want := `<!DOCTYPE html><html><head><title>x</title><script src=/x.js></script></head><body><img src=a.png loading="lazy"><p>&lt;b&gt;&amp;&lt;/b&gt;</p></body></html>`
	if body != want {
		t.Errorf("rewritten page:\ngot  %s\nwant %s", body, want)
	}
	if resp.ContentLength != -1 || resp.Header.Get("ETag") != `W/"p1"` {
		t.Errorf("Content-Length %d, ETag %q; want chunked and W/\"p1\"", resp.ContentLength, resp.Header.Get("ETag"))
	}
	if _, body := httpGet(t, c, "http://"+p.addr+"/text"); body != page {
		t.Errorf("text/plain rewritten: %q", body)
	}
	if _, body := httpGet(t, c, "http://"+p.addr+"/gz"); body != gz.String() {
		t.Errorf("gzip body changed")
	}
}

// TestValidateCacheOnWorkerRoute: `verge validate` accepts cache on a worker route and
// refuses bad html_rewrite rules, naming the field.
func TestValidateCacheOnWorkerRoute(t *testing.T) {
	mod := testwasm.BuildFile(t, "examples/workers/hello")
	dir := t.TempDir()
	write := func(routes string) string {
		f := dir + "/v.yaml"
		y := fmt.Sprintf("listeners: [{name: main, address: \"127.0.0.1:0\"}]\nworkers: [{name: w, module: %q}]\nroutes:\n%s", mod, routes)
		os.WriteFile(f, []byte(y), 0o644)
		return f
	}
	out, err := exec.Command(verge(t), "validate", "-c", write("  - {worker: w, cache: {}}\n")).CombinedOutput()
	if err != nil {
		t.Fatalf("cache on a worker route refused: %v\n%s", err, out)
	}
	out, err = exec.Command(verge(t), "validate", "-c", write("  - {worker: w, cache: {}, html_rewrite: [{selector: \"a:hover\", remove: true}]}\n")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "routes[0].html_rewrite[0].selector") {
		t.Errorf("bad selector: %v\n%s", err, out)
	}
}

// TestDevCacheAndRewriteExamples runs both examples under `verge dev`.
func TestDevCacheAndRewriteExamples(t *testing.T) {
	c := &http.Client{Timeout: 10 * time.Second}
	d := startDev(t, t.TempDir(), testwasm.Root()+"/examples/workers/cache")
	r1, b1 := httpGet(t, c, "http://"+d.addr+"/api/dev")
	r2, b2 := httpGet(t, c, "http://"+d.addr+"/api/dev")
	if r1.Header.Get("X-Cache") != "MISS" || r2.Header.Get("X-Cache") != "HIT" || b1 != b2 {
		t.Errorf("verge dev Cache API: %s %q then %s %q", r1.Header.Get("X-Cache"), b1, r2.Header.Get("X-Cache"), b2)
	}
	d2 := startDev(t, t.TempDir(), testwasm.Root()+"/examples/workers/rewrite")
	_, body := httpGet(t, c, "http://"+d2.addr+"/page?items=2000")
	for _, w := range []string{`<script src="/analytics.js" defer></script></head>`, `<img src="/i/1999.png" loading="lazy">`, `rel="nofollow noopener"`, `<h1 id="greeting">Hello &lt;from&gt; the edge &amp; co</h1>`} {
		if !strings.Contains(body, w) {
			t.Errorf("rewritten page lacks %s", w)
		}
	}
	if strings.Contains(body, "buy now") || strings.Count(body, `loading="lazy"`) != 2000 {
		t.Errorf("rewritten page: ads left or images missed (%d lazy)", strings.Count(body, `loading="lazy"`))
	}
}
