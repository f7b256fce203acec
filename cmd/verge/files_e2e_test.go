package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/verge-edge/verge/internal/testwasm"
	"golang.org/x/net/http2"
)

// siteText is a compressible text of about 60 KB.
var siteText = func() string {
	var b strings.Builder
	for i := 0; b.Len() < 60000; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox jumps over the lazy dog %d times\n", i, i*7%13)
	}
	return b.String()
}()

// staticSite writes a document root and, next to it, a file that must stay unreachable.
func staticSite(t *testing.T) (root, secret string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "site")
	secret = "TOP-SECRET-OUTSIDE-THE-ROOT"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(root, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(body), 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "outside.txt"), []byte(secret), 0o644))
	write("index.html", "<html><head></head><body>home page</body></html>\n")
	write("big.txt", siteText)
	write("small.txt", "tiny\n")
	write("logo.png", strings.Repeat("\x89PNG", 400))
	write("app.js", "console.log('app');\n"+siteText)
	write("docs/readme.txt", "docs\n")
	write("dir/<b>&amp;.txt", "x")
	write(".env", "PASSWORD="+secret)
	css := "body { color: red; }\n" + siteText
	write("style.css", css)
	// Precompressed variants, deliberately different from what on-the-fly compression
	// would produce, so that the test sees which one was sent.
	var br bytes.Buffer
	bw := brotli.NewWriterLevel(&br, 11)
	io.WriteString(bw, css)
	bw.Close()
	write("style.css.br", br.String())
	must(os.Symlink(filepath.Join(dir, "outside.txt"), filepath.Join(root, "escape.txt")))
	must(os.Symlink(dir, filepath.Join(root, "up")))
	must(os.Symlink("big.txt", filepath.Join(root, "inside-link.txt")))
	return root, secret
}

func decode(t *testing.T, coding string, body []byte) string {
	t.Helper()
	var r io.Reader
	var err error
	switch coding {
	case "gzip":
		r, err = gzip.NewReader(bytes.NewReader(body))
	case "br":
		r = brotli.NewReader(bytes.NewReader(body))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(body))
		if err == nil {
			defer d.Close()
			r = d
		}
	case "":
		return string(body)
	default:
		t.Fatalf("unexpected coding %q", coding)
	}
	if err != nil {
		t.Fatalf("%s: %v", coding, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", coding, err)
	}
	return string(out)
}

// TestRunStaticFiles serves a directory through `verge run`: content, types, ETags,
// ranges, conditional requests, methods, listings, the SPA fallback, and every path
// traversal spelling refused.
func TestRunStaticFiles(t *testing.T) {
	root, secret := staticSite(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
request_id: {enabled: true}
routes:
  - name: app
    match: {host: app.test}
    files: {root: %q, spa_fallback: /index.html}
  - name: static
    files: {root: %q, browse: true}
    response_headers: {set: {X-Served-By: verge}}
`, p.addr, p.pidFile, root, root)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, err := p.get(c, "/")
		return err == nil
	})
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.addr+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	resp, body := do("GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(body, "home page") || resp.Header.Get("X-Served-By") != "verge" ||
		resp.Header.Get("X-Request-ID") == "" {
		t.Fatalf("GET / = %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = do("GET", "/big.txt")
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if resp.StatusCode != 200 || body != siteText || resp.ContentLength != int64(len(siteText)) ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.HasPrefix(etag, `"`) ||
		lastMod == "" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET /big.txt = %d, %d bytes, %v", resp.StatusCode, len(body), resp.Header)
	}
	if resp, _ := do("GET", "/logo.png"); resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("png type %q", resp.Header.Get("Content-Type"))
	}
	if resp, body := do("GET", "/inside-link.txt"); resp.StatusCode != 200 || body != siteText {
		t.Errorf("a symlink inside the root: %d", resp.StatusCode)
	}

	// Ranges.
	resp, body = do("GET", "/big.txt", "Range", "bytes=100-199")
	if resp.StatusCode != 206 || body != siteText[100:200] || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(siteText)) {
		t.Errorf("single range: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = do("GET", "/big.txt", "Range", "bytes=1000-") // over 32 KiB: sendfile from an offset
	if resp.StatusCode != 206 || body != siteText[1000:] {
		t.Errorf("open range: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = do("GET", "/big.txt", "Range", "bytes=-10")
	if resp.StatusCode != 206 || body != siteText[len(siteText)-10:] {
		t.Errorf("suffix range: %d %q", resp.StatusCode, body)
	}
	resp, body = do("GET", "/big.txt", "Range", "bytes=0-4,1000-1009")
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multiple ranges: %d %v", resp.StatusCode, resp.Header)
	}
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for i, want := range []string{siteText[0:5], siteText[1000:1010]} {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, _ := io.ReadAll(part)
		if string(got) != want || part.Header.Get("Content-Range") == "" {
			t.Errorf("part %d = %q %v, want %q", i, got, part.Header, want)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after the parts: %v", err)
	}
	if resp, _ := do("GET", "/big.txt", "Range", "bytes=999999-"); resp.StatusCode != 416 ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(siteText)) {
		t.Errorf("unsatisfiable range: %d %v", resp.StatusCode, resp.Header)
	}

	// Conditional requests.
	cond := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"If-None-Match matching", []string{"If-None-Match", etag}, 304},
		{"If-None-Match weak", []string{"If-None-Match", `"nope", W/` + etag}, 304},
		{"If-None-Match other", []string{"If-None-Match", `"nope"`}, 200},
		{"If-Modified-Since same", []string{"If-Modified-Since", lastMod}, 304},
		{"If-Modified-Since old", []string{"If-Modified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, 200},
		{"If-Match matching", []string{"If-Match", etag}, 200},
		{"If-Match other", []string{"If-Match", `"nope"`}, 412},
		{"If-Unmodified-Since old", []string{"If-Unmodified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"}, 412},
		{"If-Range matching", []string{"Range", "bytes=0-9", "If-Range", etag}, 206},
		{"If-Range other", []string{"Range", "bytes=0-9", "If-Range", `"nope"`}, 200},
		{"If-Range date", []string{"Range", "bytes=0-9", "If-Range", lastMod}, 206},
	}
	for _, tc := range cond {
		if resp, _ := do("GET", "/big.txt", tc.hdr...); resp.StatusCode != tc.status {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if resp, _ := do("GET", "/big.txt", "If-None-Match", etag); resp.Header.Get("ETag") != etag {
		t.Errorf("304 ETag %q, want %q", resp.Header.Get("ETag"), etag)
	}

	// Methods.
	resp, body = do("HEAD", "/big.txt")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len(siteText)) {
		t.Errorf("HEAD: %d %d %q", resp.StatusCode, resp.ContentLength, body)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if resp, _ := do(m, "/big.txt"); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow %q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}

	// Directories: a redirect to the slash, the listing escaped.
	if resp, _ := do("GET", "/docs?x=1"); resp.StatusCode != 301 || resp.Header.Get("Location") != "/docs/?x=1" {
		t.Errorf("directory without slash: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = do("GET", "/dir/")
	if resp.StatusCode != 200 || !strings.Contains(body, "&lt;b&gt;&amp;amp;.txt") || strings.Contains(body, "<b>") {
		t.Errorf("listing: %d %s", resp.StatusCode, body)
	}
	if _, body := do("GET", "/"); strings.Contains(body, ".env") {
		t.Errorf("listing shows a dotfile")
	}

	// The SPA fallback: application routes get index.html, missing assets 404.
	if resp, body := do("GET", "/users/42", "Host", "app.test"); resp.StatusCode != 200 || !strings.Contains(body, "home page") {
		t.Errorf("SPA route: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "/missing.js", "Host", "app.test"); resp.StatusCode != 404 || resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("missing asset under the SPA fallback: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", "/users/42"); resp.StatusCode != 404 {
		t.Errorf("no fallback route: %d", resp.StatusCode)
	}

	// Over HTTP/2 (h2c): the buffered path instead of sendfile, a range, a 304.
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	for _, tc := range []struct {
		hdr    []string
		status int
		body   string
	}{{nil, 200, siteText}, {[]string{"Range", "bytes=5-9"}, 206, siteText[5:10]}, {[]string{"If-None-Match", etag}, 304, ""}} {
		req, _ := http.NewRequest("GET", "http://"+p.addr+"/big.txt", nil)
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("h2: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.status || string(b) != tc.body {
			t.Errorf("h2 %v: %s %d, %d bytes", tc.hdr, resp.Proto, resp.StatusCode, len(b))
		}
	}

	// Traversal: every spelling is refused, on the raw wire (clients would clean some).
	for _, path := range []string{
		"/../outside.txt", "/%2e%2e/outside.txt", "/%2E%2E/outside.txt", "/..%2foutside.txt",
		"/docs/..%2f..%2foutside.txt", "/%252e%252e/outside.txt", "/..%5coutside.txt",
		"/docs/..\\..\\outside.txt", "/escape.txt", "/up/outside.txt", "/%00", "/big.txt%00.png",
		"//../outside.txt", "/./../outside.txt", "/docs/../../outside.txt", "/.env", "/%2eenv",
		"/up/site/../outside.txt", "/%", "/%zz",
	} {
		status, body := rawGet(t, p.addr, path)
		if status == 200 || strings.Contains(body, secret) {
			t.Errorf("GET %s = %d %q: escaped the root", path, status, body)
		}
	}
	status, _ := rawGet(t, p.addr, "http://"+p.addr+"/"+filepath.Join(root, "..", "outside.txt"))
	if status == 200 {
		t.Errorf("absolute path under the root: %d", status)
	}
}

// rawGet sends one request line as written and returns the status and body.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// TestRunCompression compresses static files, a proxied origin (after html_rewrite) and
// checks negotiation, Vary, ETags, what must stay uncompressed, and that every coding
// decodes to the original bytes.
func TestRunCompression(t *testing.T) {
	root, _ := staticSite(t)
	page := "<html><head></head><body>" + strings.Repeat("<p>origin paragraph</p>\n", 400) + "</body></html>"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/origin") {
		case "/notransform":
			w.Header().Set("Cache-Control", "no-transform")
		case "/encoded":
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "already-gzip-bytes")
			return
		case "/image":
			w.Header().Set("ETag", `"img-tag"`)
			if inm := r.Header.Get("If-None-Match"); strings.Contains(inm, `"img-tag"`) {
				w.WriteHeader(304)
				return
			}
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, strings.Repeat("png", 1000))
			return
		case "/stream":
			w.Header().Set("Content-Type", "text/plain")
			for i := range 50 {
				fmt.Fprintf(w, "chunk %d %s\n", i, strings.Repeat("z", 100))
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("ETag", `"origin-tag"`)
		if inm := r.Header.Get("If-None-Match"); strings.Contains(inm, `"origin-tag"`) {
			w.WriteHeader(304) // (no Content-Type, as origins usually answer)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	}))
	t.Cleanup(origin.Close)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
upstreams: [{name: app, servers: [{address: %q}]}]
routes:
  - name: proxied
    match: {path_prefix: /origin/}
    upstream: app
    request_headers: {remove: [Accept-Encoding]}
    html_rewrite: [{selector: body, append: "<p>INJECTED</p>"}]
    compress: {level: 6}
  - name: static
    files: {root: %q, precompressed: [br]}
    compress: {algorithms: [zstd, br, gzip], min_size: 1KB}
`, p.addr, p.pidFile, strings.TrimPrefix(origin.URL, "http://"), root)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	if out, err := execVerge(t, "validate", "-c", p.cfgFile); err != nil {
		t.Fatalf("validate: %v %s", err, out)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, err := p.get(c, "/")
		return err == nil
	})
	do := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	for _, coding := range []string{"gzip", "br", "zstd"} {
		resp, body := do("/big.txt", "Accept-Encoding", coding)
		if got := resp.Header.Get("Content-Encoding"); got != coding {
			t.Fatalf("file, %s: Content-Encoding %q", coding, got)
		}
		if resp.Header.Get("Vary") != "Accept-Encoding" || !strings.HasPrefix(resp.Header.Get("ETag"), "W/") ||
			resp.ContentLength != -1 || len(body) >= len(siteText) {
			t.Errorf("file, %s: %v, %d bytes", coding, resp.Header, len(body))
		}
		if got := decode(t, coding, body); got != siteText {
			t.Errorf("file, %s: decoded body differs (%d bytes, want %d)", coding, len(got), len(siteText))
		}
		resp, body = do("/origin/page", "Accept-Encoding", coding)
		want := strings.Replace(page, "</body>", "<p>INJECTED</p></body>", 1)
		if resp.Header.Get("Content-Encoding") != coding || resp.Header.Get("ETag") != `W/"origin-tag"` ||
			decode(t, coding, body) != want {
			t.Errorf("origin, %s: %v, decoded %q...", coding, resp.Header, decode(t, coding, body)[:40])
		}
		resp, body = do("/origin/stream", "Accept-Encoding", coding)
		if got := decode(t, resp.Header.Get("Content-Encoding"), body); !strings.HasPrefix(got, "chunk 0 ") || !strings.Contains(got, "chunk 49 ") {
			t.Errorf("streamed origin, %s: %d bytes", coding, len(got))
		}
	}
	negotiation := []struct{ ae, want string }{
		{"", ""},
		{"identity", ""},
		{"gzip;q=0, br;q=0, zstd;q=0", ""},
		{"*;q=0", ""},
		{"gzip, br;q=0.9", "gzip"},
		{"gzip;q=0.5, br;q=0.9", "br"},
		{"gzip, br, zstd", "zstd"},
		{"*", "zstd"},
		{"*, zstd;q=0", "br"},
		{"x-gzip", "gzip"},
		{"deflate", ""},
	}
	for _, n := range negotiation {
		resp, body := do("/big.txt", "Accept-Encoding", n.ae)
		if got := resp.Header.Get("Content-Encoding"); got != n.want {
			t.Errorf("Accept-Encoding %q: got %q, want %q", n.ae, got, n.want)
		}
		if resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", n.ae, resp.Header.Get("Vary"))
		}
		if decode(t, resp.Header.Get("Content-Encoding"), body) != siteText {
			t.Errorf("Accept-Encoding %q: body differs", n.ae)
		}
	}
	// Not compressed: ranges, small bodies, other types, HEAD, no-transform, encoded bodies.
	if resp, body := do("/big.txt", "Accept-Encoding", "gzip", "Range", "bytes=0-99"); resp.StatusCode != 206 ||
		resp.Header.Get("Content-Encoding") != "" || string(body) != siteText[:100] {
		t.Errorf("range: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := do("/small.txt", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("small body compressed")
	}
	// (Vary is there: the route serves precompressed variants when they exist.)
	if resp, _ := do("/logo.png", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("png: %v", resp.Header)
	}
	if resp, _ := do("/origin/notransform", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("no-transform compressed")
	}
	if resp, body := do("/origin/encoded", "Accept-Encoding", "br"); resp.Header.Get("Content-Encoding") != "gzip" || string(body) != "already-gzip-bytes" {
		t.Errorf("encoded origin body: %v %q", resp.Header, body)
	}
	req, _ := http.NewRequest("HEAD", "http://"+p.addr+"/big.txt", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	// A HEAD gets its GET's head (RFC 9110 section 9.3.2), from files and from an origin.
	for _, path := range []string{"/big.txt", "/origin/page", "/small.txt", "/origin/image"} {
		get, _ := do(path, "Accept-Encoding", "gzip")
		req, _ := http.NewRequest("HEAD", "http://"+p.addr+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("HEAD %s: %v", path, err)
		}
		resp.Body.Close()
		for _, f := range []string{"Content-Encoding", "Vary", "ETag", "Content-Length"} {
			if resp.Header.Get(f) != get.Header.Get(f) {
				t.Errorf("HEAD %s: %s %q, GET's %q", path, f, resp.Header.Get(f), get.Header.Get(f))
			}
		}
	}
	// A 304 carries the ETag and Vary of its 200, compressed or not, from files and from
	// an origin's 304.
	for _, path := range []string{"/big.txt", "/small.txt", "/logo.png", "/origin/page", "/origin/image"} {
		resp, _ := do(path, "Accept-Encoding", "gzip")
		if resp304, _ := do(path, "Accept-Encoding", "gzip", "If-None-Match", resp.Header.Get("ETag")); resp304.StatusCode != 304 ||
			resp304.Header.Get("ETag") != resp.Header.Get("ETag") || resp304.Header.Get("Vary") != resp.Header.Get("Vary") {
			t.Errorf("%s: 304: %d %v; 200: %v", path, resp304.StatusCode, resp304.Header, resp.Header)
		}
	}
	// Precompressed: the .br file itself, with the original's type.
	brFile, _ := os.ReadFile(filepath.Join(root, "style.css.br"))
	resp, body := do("/style.css", "Accept-Encoding", "gzip, br")
	if resp.Header.Get("Content-Encoding") != "br" || !bytes.Equal(body, brFile) ||
		resp.Header.Get("Content-Type") != "text/css; charset=utf-8" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("precompressed: %v, %d bytes (file %d)", resp.Header, len(body), len(brFile))
	}
	if resp, body := do("/style.css", "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "gzip" ||
		!strings.HasPrefix(decode(t, "gzip", body), "body { color: red; }") {
		t.Errorf("no variant for gzip: compressed on the fly expected, got %v", resp.Header)
	}
}

func execVerge(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	code := run(args, &out, &out)
	if code != 0 {
		return out.Bytes(), fmt.Errorf("exit %d", code)
	}
	return out.Bytes(), nil
}

// TestRunCompressWorker compresses a worker's response (the worker writes to the exchange
// itself) and leaves it alone for a client that accepts no coding.
func TestRunCompressWorker(t *testing.T) {
	mod := testwasm.BuildFile(t, "examples/workers/hello")
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
workers: [{name: hello, module: %q}]
routes:
  - {name: w, worker: hello, compress: {algorithms: [br, gzip], min_size: 10B}}
`, p.addr, p.pidFile, mod)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, err := p.get(c, "/")
		return err == nil
	})
	path := "/" + strings.Repeat("abc", 300)
	for _, coding := range []string{"gzip", "br", ""} {
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		if coding != "" {
			req.Header.Set("Accept-Encoding", coding)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Header.Get("Content-Encoding"); got != coding || resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("%q: Content-Encoding %q, Vary %q", coding, got, resp.Header.Get("Vary"))
		}
		if got := decode(t, coding, body); got != "hello from "+path+"\n" {
			t.Errorf("%q: body %q", coding, got)
		}
	}
}
