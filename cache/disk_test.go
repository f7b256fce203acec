package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	if n := e2.c.PurgeTag("t1"); n.Objects != 2 || n.Disk != 2 {
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

// TestDiskOnlyRevalidationChangingHeadLength is the regression test for a disk-only object
// served with a corrupted body by the request that revalidated it, when the 304 made the
// stored head longer or shorter: the body was read at the old head's offset in the rewritten
// file. Each 304 grows or shrinks the head; a restart comes in between.
func TestDiskOnlyRevalidationChangingHeadLength(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("0123456789abcdef", 64<<10/16) // 64 KiB, disk only
	extra := ""
	var n304 int
	h := func(r *message.Request) originResp {
		if r.Header.Get("If-None-Match") == `"v1"` {
			n304++
			return originResp{status: 304, header: []string{"Cache-Control", "max-age=2", "ETag", `"v1"`, "X-Extra", extra}}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=2", "ETag", `"v1"`, "X-Extra", "a"}, body: body}
	}
	opts := Options{Dir: dir, MemorySize: 1 << 20, MemoryMaxObject: 1000}
	e := newEnv(t, opts, h)
	e.expect(e.do("GET", "/big"), 200, body, 1)
	check := func(e *env, want int64) {
		t.Helper()
		ex := e.do("GET", "/big")
		e.expect(ex, 200, body, want)
		if ex.cl != int64(len(body)) {
			t.Fatalf("Content-Length %d, want %d", ex.cl, len(body))
		}
		if got := ex.header.Get("X-Extra"); got != extra {
			t.Fatalf("X-Extra %q, want %q", got, extra)
		}
	}
	for i, x := range []string{strings.Repeat("g", 300), "s", strings.Repeat("G", 5000)} {
		extra = x
		e.clock.advance(3 * time.Second)
		check(e, int64(2+i)) // the revalidating request itself
		check(e, int64(2+i)) // a later hit
		if i == 1 {
			// Restart on the same directory, clock carried over.
			now := e.clock.Now()
			e.c.Close()
			e = newEnv(t, opts, h)
			e.o.n.Store(int64(2 + i))
			e.clock.t = now
			check(e, int64(2+i))
		}
	}
	if n304 != 3 {
		t.Fatalf("origin answered %d 304s, want 3", n304)
	}
}

// corruptObject flips one byte at offset off from the end of the only object file in dir.
func corruptObject(t *testing.T, dir string, fromEnd int64) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.obj"))
	if len(files) != 1 {
		t.Fatalf("%d object files, want 1", len(files))
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var b [1]byte
	f.ReadAt(b[:], fi.Size()-fromEnd)
	b[0] ^= 0x20
	f.WriteAt(b[:], fi.Size()-fromEnd)
	return files[0]
}

// TestDiskCorruptBodyIsNeverServed flips a body byte of a stored object: a small object (read
// whole into memory) becomes a miss; a disk-only one is cut short before its last bytes. Either
// way the file is deleted and the next request goes to the origin.
func TestDiskCorruptBodyIsNeverServed(t *testing.T) {
	for _, size := range []int{100, 200 << 10} {
		dir := t.TempDir()
		body := strings.Repeat("x", size)
		opts := Options{Dir: dir, MemorySize: 1 << 20, MemoryMaxObject: 1000}
		h := fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=1000"}, body: body})
		e := newEnv(t, opts, h)
		e.expect(e.do("GET", "/c"), 200, body, 1)
		e.c.Close()
		path := corruptObject(t, dir, 10)
		e = newEnv(t, opts, h)
		ex := e.do("GET", "/c")
		switch {
		case size <= 1000:
			e.expect(ex, 200, body, 1) // a miss, fetched again
		case ex.body.String() == body:
			t.Fatalf("size %d: corrupt body served in full", size)
		case ex.abort == nil && ex.body.Len() == size:
			t.Fatalf("size %d: corrupt body served without an abort", size)
		default:
			if strings.Contains(ex.body.String(), "X") {
				t.Fatalf("size %d: the corrupted byte reached the client", size)
			}
			if _, err := os.Stat(path); err == nil && e.hits() == 0 {
				t.Fatalf("size %d: corrupt file kept", size)
			}
			e.expect(e.do("GET", "/c"), 200, body, 1)
		}
	}
}

// TestDiskTornFilesAreDropped truncates an object file and damages a meta: both are dropped
// at start.
func TestDiskTornFilesAreDropped(t *testing.T) {
	for _, damage := range []string{"truncate", "meta"} {
		dir := t.TempDir()
		opts := Options{Dir: dir}
		h := fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=1000"}, body: "some body"})
		e := newEnv(t, opts, h)
		e.expect(e.do("GET", "/t"), 200, "some body", 1)
		e.c.Close()
		files, _ := filepath.Glob(filepath.Join(dir, "objects", "*", "*.obj"))
		if len(files) != 1 {
			t.Fatalf("%d files", len(files))
		}
		fi, _ := os.Stat(files[0])
		switch damage {
		case "truncate":
			os.Truncate(files[0], fi.Size()-1)
		case "meta":
			f, _ := os.OpenFile(files[0], os.O_RDWR, 0)
			f.WriteAt([]byte("Z"), diskHeaderSize+2)
			f.Close()
		}
		e = newEnv(t, opts, h)
		if _, disk := e.c.Usage(); disk != 0 {
			t.Fatalf("%s: disk usage %d, want 0", damage, disk)
		}
		e.expect(e.do("GET", "/t"), 200, "some body", 1)
	}
}

// TestPurgeCountsTiersAndRejectsRelativeURLs: purges report per-tier counts, PurgeAll empties
// both tiers, and a relative URL is an error rather than a silent zero.
func TestPurgeCountsTiersAndRejectsRelativeURLs(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Options{Dir: dir, MemorySize: 1 << 20, MemoryMaxObject: 100}, func(r *message.Request) originResp {
		body := "small"
		if strings.HasPrefix(r.Target, "/big") {
			body = strings.Repeat("b", 1000) // disk only
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=1000"}, body: body}
	})
	for _, p := range []string{"/c/1", "/c/2", "/big/1"} {
		e.do("GET", p)
	}
	for _, rel := range []string{"/c/1", "c/1", "example.test/c/1", "http:///c/1", ""} {
		if _, err := e.c.PurgeURL(rel); err == nil {
			t.Errorf("PurgeURL(%q): no error", rel)
		}
		if _, err := e.c.PurgePrefix(rel); err == nil {
			t.Errorf("PurgePrefix(%q): no error", rel)
		}
	}
	if n, err := e.c.PurgeURL("http://example.test/c/1"); err != nil || n != (Purged{Objects: 1, Memory: 1, Disk: 1}) {
		t.Fatalf("PurgeURL: %+v %v", n, err)
	}
	if n := e.c.PurgeAll(); n != (Purged{Objects: 2, Memory: 1, Disk: 2}) {
		t.Fatalf("PurgeAll: %+v", n)
	}
	if mem, disk := e.c.Usage(); disk != 0 {
		t.Fatalf("usage after PurgeAll: memory %d, disk %d", mem, disk)
	}
	e.expect(e.do("GET", "/c/2"), 200, "small", 4)
}

// TestDiskOnlyConcurrentRevalidations revalidates a disk-only object from many goroutines at
// once while each 304 changes the head's length: every response carries the exact body.
func TestDiskOnlyConcurrentRevalidations(t *testing.T) {
	body := strings.Repeat("0123456789", 20<<10/10)
	var mu sync.Mutex
	k := 0
	e := newEnv(t, Options{Dir: t.TempDir(), MemorySize: 1 << 20, MemoryMaxObject: 1000}, func(r *message.Request) originResp {
		h := []string{"Cache-Control", "max-age=0", "ETag", `"v"`}
		if r.Header.Get("If-None-Match") == `"v"` {
			mu.Lock()
			k++
			n := k % 7 * 200
			mu.Unlock()
			return originResp{status: 304, header: append(h, "X-Pad", strings.Repeat("p", n+1))}
		}
		return originResp{status: 200, header: h, body: body}
	})
	e.do("GET", "/r")
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				ex := e.do("GET", "/r")
				if ex.status != 200 || ex.body.String() != body {
					errs <- fmt.Sprintf("status %d, %d bytes, Cache-Status %q", ex.status, ex.body.Len(), cacheStatus(ex))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
}
