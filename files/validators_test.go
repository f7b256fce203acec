package files

import (
	"os"
	"path/filepath"
	"runtime"
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

// A symlink inside the root that leads to a dotfile or into a dot directory does not get
// around the dotfile rule; with Hidden it is served. Linux only (the check reads /proc).
func TestSymlinkToDotfileRefused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the check reads /proc/self/fd")
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, ".env"), []byte("SECRET=1"), 0o644)
	os.MkdirAll(filepath.Join(root, ".git"), 0o755)
	os.WriteFile(filepath.Join(root, ".git", "config"), []byte("[core]"), 0o644)
	os.MkdirAll(filepath.Join(root, ".well-known"), 0o755)
	os.WriteFile(filepath.Join(root, ".well-known", "security.txt"), []byte("Contact: x"), 0o644)
	os.WriteFile(filepath.Join(root, "ok.txt"), []byte("fine"), 0o644)
	for link, target := range map[string]string{"env": ".env", "conf": ".git", "wk": ".well-known", "alias.txt": "ok.txt"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, hidden := range []bool{false, true} {
		h, err := New(Config{Root: root, Hidden: hidden})
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]int{"/env": 404, "/conf/config": 404, "/wk/security.txt": 200, "/alias.txt": 200, "/ok.txt": 200} {
			if hidden && want == 404 {
				want = 200
			}
			rec := newRec("GET", path)
			h.Serve(rec, &rec.req, nil)
			if rec.resp.Status != want {
				t.Errorf("hidden %v, %s: %d, want %d", hidden, path, rec.resp.Status, want)
			}
		}
		h.Close()
	}
}
