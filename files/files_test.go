package files

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/compression"
	"github.com/verge-edge/verge/message"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in     string
		hidden bool
		rel    string
		slash  bool
		status int
	}{
		{"/", false, ".", true, 0},
		{"/a/b.txt", false, "a/b.txt", false, 0},
		{"/a/b/", false, "a/b", true, 0},
		{"//a///b", false, "a/b", false, 0},
		{"/./a/./b", false, "a/b", false, 0},
		{"/a%20b", false, "a b", false, 0},
		{"/%E2%82%AC", false, "€", false, 0},
		{"/../x", false, "", false, 400},
		{"/a/../x", false, "", false, 400},
		{"/%2e%2e/x", false, "", false, 400},
		{"/%2E%2e%2Fx", false, "", false, 400},
		{"/..%2fx", false, "", false, 400},
		{"/a%5c..%5cx", false, "", false, 400},
		{"/a\\b", false, "", false, 400},
		{"/a%00b", false, "", false, 400},
		{"/%", false, "", false, 400},
		{"/%2", false, "", false, 400},
		{"/%zz", false, "", false, 400},
		{"/%252e%252e/x", false, "%2e%2e/x", false, 0}, // decoded once: a literal name
		{"a/b", false, "", false, 400},
		{"", false, "", false, 400},
		{"/.env", false, "", false, 404},
		{"/a/.git/config", false, "", false, 404},
		{"/%2eenv", false, "", false, 404},
		{"/.env", true, ".env", false, 0},
		{"/.well-known/acme", false, ".well-known/acme", false, 0},
		{"/..", true, "", false, 400},
	}
	for _, tc := range tests {
		rel, slash, status := cleanPath(tc.in, tc.hidden)
		if rel != tc.rel || status != tc.status || (status == 0 && slash != tc.slash) {
			t.Errorf("cleanPath(%q, %v) = %q, %v, %d; want %q, %v, %d", tc.in, tc.hidden, rel, slash, status, tc.rel, tc.slash, tc.status)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/", "/a%5cb", "/.x", "//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, _, status := cleanPath(p, false)
		if status != 0 {
			return
		}
		if rel != "." && (!filepath.IsLocal(rel) || strings.Contains(rel, "\\") || strings.Contains(rel, "\x00")) {
			t.Fatalf("cleanPath(%q) = %q: not a local name", p, rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." || seg == "" && rel != "" {
				t.Fatalf("cleanPath(%q) = %q", p, rel)
			}
		}
	})
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		v             string
		size          int64
		want          []byteRange
		unsat, ignore bool
	}{
		{"bytes=0-9", 100, []byteRange{{0, 10}}, false, false},
		{"bytes=90-", 100, []byteRange{{90, 10}}, false, false},
		{"bytes=90-200", 100, []byteRange{{90, 10}}, false, false},
		{"bytes=-10", 100, []byteRange{{90, 10}}, false, false},
		{"bytes=-200", 100, []byteRange{{0, 100}}, false, false},
		{"bytes=0-0,-1", 100, []byteRange{{0, 1}, {99, 1}}, false, false},
		{"BYTES = 1-2", 100, []byteRange{{1, 2}}, false, false},
		{"bytes=100-", 100, nil, true, false},
		{"bytes=-0", 100, nil, true, false},
		{"bytes=200-300, 150-", 100, nil, true, false},
		{"bytes=5-1", 100, nil, false, true},
		{"bytes=a-b", 100, nil, false, true},
		{"bytes=", 100, nil, false, true},
		{"items=0-1", 100, nil, false, true},
		{"bytes=0-9", 0, nil, true, false},
		{"bytes=0-99,0-99", 100, nil, false, true},                             // more bytes than the file
		{"bytes=" + strings.Repeat("0-0,", 17) + "0-0", 100, nil, false, true}, // too many
	}
	for _, tc := range tests {
		got, unsat, ignore := parseRange(tc.v, tc.size)
		if unsat != tc.unsat || ignore != tc.ignore || len(got) != len(tc.want) {
			t.Errorf("parseRange(%q, %d) = %v, %v, %v", tc.v, tc.size, got, unsat, ignore)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseRange(%q) range %d = %v, want %v", tc.v, i, got[i], tc.want[i])
			}
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-9,-5,20-", int64(100))
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 0 {
			size = -size
		}
		rs, _, _ := parseRange(v, size)
		var total int64
		for _, r := range rs {
			if r.start < 0 || r.length <= 0 || r.start+r.length > size {
				t.Fatalf("parseRange(%q, %d): range %v outside the file", v, size, r)
			}
			total += r.length
		}
		if total > size || len(rs) > maxRanges {
			t.Fatalf("parseRange(%q, %d): %d ranges, %d bytes", v, size, len(rs), total)
		}
	})
}

func TestMatchETag(t *testing.T) {
	for _, tc := range []struct {
		list, etag string
		weak, want bool
	}{
		{`"a"`, `"a"`, false, true},
		{`W/"a"`, `"a"`, false, false},
		{`W/"a"`, `"a"`, true, true},
		{`"b", "a"`, `"a"`, false, true},
		{`*`, `"a"`, false, true},
		{`"b"`, `"a"`, true, false},
		{`"a"`, `W/"a"`, false, false},
	} {
		if got := matchETag(tc.list, tc.etag, tc.weak); got != tc.want {
			t.Errorf("matchETag(%q, %q, %v) = %v", tc.list, tc.etag, tc.weak, got)
		}
	}
}

// recorder is a message.ServerExchange that keeps the response.
type recorder struct {
	req      message.Request
	resp     message.Response
	body     bytes.Buffer
	finished bool
}

func (r *recorder) Request() *message.Request { return &r.req }
func (r *recorder) Context() context.Context  { return context.Background() }
func (r *recorder) Conn() *message.ConnInfo   { return &message.ConnInfo{} }
func (r *recorder) WriteHeader(resp *message.Response) error {
	r.resp.Status, r.resp.ContentLength = resp.Status, resp.ContentLength
	r.resp.Header.CopyFrom(&resp.Header)
	return nil
}
func (r *recorder) Write(p []byte) (int, error)  { return r.body.Write(p) }
func (r *recorder) Flush() error                 { return nil }
func (r *recorder) Finish(*message.Header) error { r.finished = true; return nil }
func (r *recorder) Abort(error)                  {}

func newRec(method, target string, fields ...string) *recorder {
	r := &recorder{}
	r.req.Method, r.req.Target, r.req.Proto = method, target, message.HTTP11
	for i := 0; i+1 < len(fields); i += 2 {
		r.req.Header.Add(fields[i], fields[i+1])
	}
	return r
}

func site(t testing.TB) (string, string) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "secret"), []byte("SECRET"), 0o644)
	os.WriteFile(filepath.Join(root, "a.txt"), []byte(strings.Repeat("hello static world\n", 100)), 0o644)
	os.WriteFile(filepath.Join(root, "index.html"), []byte("<p>index</p>"), 0o644)
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "out"))
	os.Symlink(dir, filepath.Join(root, "updir"))
	os.Symlink("../secret", filepath.Join(root, "sub", "rel"))
	return root, dir
}

func TestServe(t *testing.T) {
	root, _ := site(t)
	h, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := strings.Repeat("hello static world\n", 100)
	tests := []struct {
		method, target string
		fields         []string
		status         int
		body           string
	}{
		{"GET", "/a.txt", nil, 200, want},
		{"GET", "/a.txt?x=1", nil, 200, want},
		{"GET", "/", nil, 200, "<p>index</p>"},
		{"GET", "/index.html", []string{"Range", "bytes=3-5"}, 206, "ind"},
		{"HEAD", "/a.txt", nil, 200, ""},
		{"POST", "/a.txt", nil, 405, "405 Method Not Allowed: static files answer GET and HEAD\n"},
		{"GET", "/missing", nil, 404, "404 Not Found\n"},
		{"GET", "/out", nil, 404, "404 Not Found\n"},
		{"GET", "/updir/secret", nil, 404, "404 Not Found\n"},
		{"GET", "/sub/rel", nil, 404, "404 Not Found\n"},
		{"GET", "/sub/", nil, 403, "403 Forbidden\n"},
		{"GET", "/sub", nil, 301, "301 Moved Permanently\n"},
		{"GET", "/../secret", nil, 400, "400 Bad Request: invalid path\n"},
	}
	for _, tc := range tests {
		rec := newRec(tc.method, tc.target, tc.fields...)
		res, err := h.Serve(rec, &rec.req, nil)
		if err != nil || res.Status != tc.status || rec.body.String() != tc.body || !rec.finished {
			t.Errorf("%s %s = %d %q (%v), want %d %q", tc.method, tc.target, res.Status, rec.body.String(), err, tc.status, tc.body)
		}
		if res.Status == 200 && tc.method == "GET" && res.BytesSent != int64(len(tc.body)) {
			t.Errorf("%s: BytesSent %d", tc.target, res.BytesSent)
		}
	}
}

func TestServeHeadHookAndCompression(t *testing.T) {
	root, _ := site(t)
	p, _ := compression.NewPolicy([]string{"gzip"}, 0, 0, nil)
	h, err := New(Config{Root: root, Compress: p})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := newRec("GET", "/a.txt", "Accept-Encoding", "gzip")
	res, err := h.Serve(rec, &rec.req, func(r *message.Response) { r.Header.Set("X-Hook", "1") })
	if err != nil || rec.resp.Header.Get("Content-Encoding") != "gzip" || rec.resp.Header.Get("X-Hook") != "1" ||
		res.BytesSent != int64(rec.body.Len()) || rec.body.Len() >= 1900 {
		t.Errorf("compressed: %v %v, %d bytes", err, rec.resp.Header.Fields(), rec.body.Len())
	}
	// The hook can forbid compression, as an origin would, with no-transform.
	rec = newRec("GET", "/a.txt", "Accept-Encoding", "gzip")
	h.Serve(rec, &rec.req, func(r *message.Response) { r.Header.Set("Cache-Control", "no-transform") })
	if rec.resp.Header.Has("Content-Encoding") || rec.body.Len() != 1900 {
		t.Errorf("no-transform: %v", rec.resp.Header.Fields())
	}
}

func TestServeConditional(t *testing.T) {
	root, _ := site(t)
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(root, "a.txt"), mod, mod)
	h, _ := New(Config{Root: root})
	defer h.Close()
	rec := newRec("GET", "/a.txt")
	h.Serve(rec, &rec.req, nil)
	etag := rec.resp.Header.Get("ETag")
	if etag != fmt.Sprintf(`"%x-76c"`, mod.Unix()) || rec.resp.Header.Get("Last-Modified") != "Fri, 02 Jan 2026 03:04:05 GMT" {
		t.Fatalf("validators %q %q", etag, rec.resp.Header.Get("Last-Modified"))
	}
	for _, tc := range []struct {
		fields []string
		status int
	}{
		{[]string{"If-None-Match", etag}, 304},
		{[]string{"If-None-Match", "*"}, 304},
		{[]string{"If-Modified-Since", "Fri, 02 Jan 2026 03:04:05 GMT"}, 304},
		{[]string{"If-Modified-Since", "Friday, 02-Jan-26 03:04:05 GMT"}, 304},
		{[]string{"If-Modified-Since", "Fri, 02 Jan 2026 03:04:04 GMT"}, 200},
		{[]string{"If-Modified-Since", "garbage"}, 200},
		{[]string{"If-None-Match", `"x"`, "If-Modified-Since", "Fri, 02 Jan 2026 03:04:05 GMT"}, 200},
		{[]string{"If-Match", `"x"`}, 412},
		{[]string{"If-Match", "W/" + etag}, 412},
		{[]string{"If-Unmodified-Since", "Fri, 02 Jan 2026 03:04:04 GMT"}, 412},
		{[]string{"If-Unmodified-Since", "Fri, 02 Jan 2026 03:04:05 GMT"}, 200},
		{[]string{"Range", "bytes=0-1", "If-Range", etag}, 206},
		{[]string{"Range", "bytes=0-1", "If-Range", "W/" + etag}, 200},
		{[]string{"Range", "bytes=0-1", "If-Range", "Fri, 02 Jan 2026 03:04:05 GMT"}, 206},
		{[]string{"Range", "bytes=0-1", "If-Range", "Fri, 02 Jan 2026 03:04:06 GMT"}, 200},
	} {
		rec := newRec("GET", "/a.txt", tc.fields...)
		if res, _ := h.Serve(rec, &rec.req, nil); res.Status != tc.status {
			t.Errorf("%v: %d, want %d", tc.fields, res.Status, tc.status)
		}
	}
}

func TestSPAFallbackRule(t *testing.T) {
	root, _ := site(t)
	h, err := New(Config{Root: root, SPAFallback: "/index.html"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for target, status := range map[string]int{
		"/users/42": 200, "/deep/app/route/": 200, "/app.js": 404, "/img/x.png": 404, "/out": 404,
	} {
		rec := newRec("GET", target)
		if res, _ := h.Serve(rec, &rec.req, nil); res.Status != status {
			t.Errorf("%s: %d, want %d", target, res.Status, status)
		}
	}
	if _, err := New(Config{Root: root, SPAFallback: "/../x"}); err == nil {
		t.Error("a fallback outside the root was accepted")
	}
}

// BenchmarkServe is the handler's cost for a small file through an exchange without
// ReadFrom (the buffered path: TLS, HTTP/2, HTTP/3).
func BenchmarkServe(b *testing.B) {
	root, _ := site(b)
	h, _ := New(Config{Root: root})
	defer h.Close()
	for _, tc := range []struct{ name, target, rng string }{{"1KiB", "/a.txt", ""}, {"range", "/a.txt", "bytes=0-99"}} {
		b.Run(tc.name, func(b *testing.B) {
			rec := newRec("GET", tc.target)
			if tc.rng != "" {
				rec.req.Header.Add("Range", tc.rng)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec.body.Reset()
				rec.resp.Header.Reset()
				if res, _ := h.Serve(rec, &rec.req, nil); res.Status/100 != 2 {
					b.Fatal(res.Status)
				}
			}
		})
	}
}

// TestSlashRedirectStaysLocal checks that the directory redirect cannot be turned into a
// protocol-relative Location ("//host/...").
func TestSlashRedirectStaysLocal(t *testing.T) {
	root, _ := site(t)
	os.MkdirAll(filepath.Join(root, "evil.example"), 0o755)
	h, _ := New(Config{Root: root})
	defer h.Close()
	for target, want := range map[string]string{
		"//sub":           "/sub/",
		"///evil.example": "/evil.example/",
		"/sub?a=1":        "/sub/?a=1",
	} {
		rec := newRec("GET", target)
		res, _ := h.Serve(rec, &rec.req, nil)
		if loc := rec.resp.Header.Get("Location"); res.Status != 301 || loc != want {
			t.Errorf("%s: %d Location %q, want %q", target, res.Status, loc, want)
		}
	}
}
