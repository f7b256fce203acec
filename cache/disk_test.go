package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

func TestDiskTierSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h := fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=1000", "Cache-Tag", "t1", "Vary", "Accept"}, body: "persisted"})
	e := newEnv(t, Options{Dir: dir}, h)
	e.expect(e.do("GET", "/p", "Accept", "text/html"), 200, "persisted", 1)
	e.c.Close()

	// A new cache instance on the same directory serves the object without the origin.
	e2 := newEnv(t, Options{Dir: dir}, h)
	e2.clock.t = e.clock.Now().Add(10 * time.Second)
	ex := e2.do("GET", "/p", "Accept", "text/html")
	e2.expect(ex, 200, "persisted", 0)
	if ex.header.Get("Age") != "10" {
		t.Fatalf("Age %q, want 10", ex.header.Get("Age"))
	}
	e2.expect(e2.do("GET", "/p", "Accept", "image/png"), 200, "persisted", 1)
	if n := e2.c.PurgeTag("t1"); n != 2 {
		t.Fatalf("PurgeTag after restart removed %d, want 2", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.obj"))
	if len(files) != 0 {
		t.Fatalf("%d object files left after purge", len(files))
	}
}

func TestDiskOnlyLargeObjectsAndEviction(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("d", 4000)
	e := newEnv(t, Options{Dir: dir, MemorySize: 1 << 20, MemoryMaxObject: 1000, DiskSize: 10000},
		func(r *message.Request) originResp {
			return originResp{status: 200, header: []string{"Cache-Control", "max-age=1000"}, body: body}
		})
	e.do("GET", "/1")
	e.expect(e.do("GET", "/1"), 200, body, 1) // from disk (too big for memory)
	e.do("GET", "/2")
	e.do("GET", "/3") // over 10000 bytes: the least recently used (/1) goes
	if _, disk := e.c.Usage(); disk > 10000 {
		t.Fatalf("disk usage %d over the limit", disk)
	}
	e.expect(e.do("GET", "/3"), 200, body, 3)
	e.expect(e.do("GET", "/1"), 200, body, 4)
}

func TestDiskIgnoresLeftoversAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o750)
	os.MkdirAll(filepath.Join(dir, "objects", "ab"), 0o750)
	os.WriteFile(filepath.Join(dir, "tmp", "obj-1"), []byte("partial"), 0o640)
	os.WriteFile(filepath.Join(dir, "objects", "ab", "ab00000000000000.obj"), []byte("garbage"), 0o640)
	c, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, disk := c.Usage(); disk != 0 {
		t.Fatalf("disk usage %d, want 0", disk)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "obj-1")); !os.IsNotExist(err) {
		t.Fatal("partial file not removed")
	}
}
