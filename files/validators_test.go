package files

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verge-edge/verge/compression"
)

// With compress on, a 304 carries the ETag and Vary of the 200 it stands for, whether that
// 200 was compressed (a.css), left alone by the policy (img.png: type; small.txt: below
// min_size) or a precompressed variant (big.js.gz); and a HEAD gets its GET's head.
func TestCompress304AndHeadMatchThe200(t *testing.T) {
	root := t.TempDir()
	for name, body := range map[string]string{
		"img.png":   strings.Repeat("x", 4096),
		"small.txt": "tiny",
		"big.js":    strings.Repeat("var a=1;\n", 500),
		"big.js.gz": "GZDATA",
		"a.css":     strings.Repeat("a{b:c}\n", 500),
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := compression.NewPolicy([]string{"gzip"}, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Root: root, Compress: p, Precompressed: []compression.Algorithm{compression.Gzip}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, tc := range []struct{ path, ce string }{
		{"/img.png", ""}, {"/small.txt", ""}, {"/big.js", "gzip"}, {"/a.css", "gzip"},
	} {
		get := newRec("GET", tc.path, "Accept-Encoding", "gzip")
		h.Serve(get, &get.req, nil)
		et := get.resp.Header.Get("ETag")
		if get.resp.Status != 200 || get.resp.Header.Get("Content-Encoding") != tc.ce {
			t.Fatalf("%s: %d, Content-Encoding %q", tc.path, get.resp.Status, get.resp.Header.Get("Content-Encoding"))
		}
		cond := newRec("GET", tc.path, "Accept-Encoding", "gzip", "If-None-Match", et)
		h.Serve(cond, &cond.req, nil)
		if cond.resp.Status != 304 {
			t.Fatalf("%s: If-None-Match %s got %d", tc.path, et, cond.resp.Status)
		}
		if got := cond.resp.Header.Get("ETag"); got != et {
			t.Errorf("%s: 304 ETag %s, 200 ETag %s", tc.path, got, et)
		}
		if g, c := get.resp.Header.Get("Vary"), cond.resp.Header.Get("Vary"); g != c {
			t.Errorf("%s: 304 Vary %q, 200 Vary %q", tc.path, c, g)
		}
		head := newRec("HEAD", tc.path, "Accept-Encoding", "gzip")
		h.Serve(head, &head.req, nil)
		for _, f := range []string{"ETag", "Vary", "Content-Encoding", "Content-Type", "Accept-Ranges"} {
			if g, hv := get.resp.Header.Get(f), head.resp.Header.Get(f); g != hv {
				t.Errorf("%s: %s: GET %q, HEAD %q", tc.path, f, g, hv)
			}
		}
		if get.resp.ContentLength != head.resp.ContentLength {
			t.Errorf("%s: Content-Length: GET %d, HEAD %d", tc.path, get.resp.ContentLength, head.resp.ContentLength)
		}
	}
}
