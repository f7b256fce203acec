package cache

import (
	"strconv"
	"strings"
	"testing"

	"github.com/verge-edge/verge/message"
)

// rangeOrigin serves full with an ETag, honouring one "bytes=a-b", "a-" or "-n" range.
func rangeOrigin(full, etag string) func(*message.Request) originResp {
	return func(r *message.Request) originResp {
		h := []string{"Cache-Control", "max-age=3600", "ETag", etag}
		rg := r.Header.Get("Range")
		if ir := r.Header.Get("If-Range"); rg == "" || (ir != "" && ir != etag) {
			return originResp{status: 200, header: h, body: full}
		}
		a, b, ok, sat := parseRange(rg, int64(len(full)))
		if !ok || !sat {
			return originResp{status: 416, header: []string{"Content-Range", "bytes */" + strconv.Itoa(len(full))}}
		}
		cr := "bytes " + strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10) + "/" + strconv.Itoa(len(full))
		return originResp{status: 206, header: append(h, "Content-Range", cr), body: full[a : b+1]}
	}
}

func (e *env) expectRange(ex *recExchange, status int, body, contentRange string, origin int64) {
	e.t.Helper()
	e.expect(ex, status, body, origin)
	if got := ex.header.Get("Content-Range"); got != contentRange {
		e.t.Fatalf("Content-Range %q, want %q", got, contentRange)
	}
}

// TestPartialStoredAndReused stores a 206 and answers ranges inside it from the cache; a
// request for other bytes goes to the origin.
func TestPartialStoredAndReused(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 206, header: []string{"Cache-Control", "max-age=3600", "Content-Range", "bytes 5-9/10"}, body: "56789"}))
	e.expectRange(e.do("GET", "/p", "Range", "bytes=-5"), 206, "56789", "bytes 5-9/10", 1)
	e.expectRange(e.do("GET", "/p", "Range", "bytes=-5"), 206, "56789", "bytes 5-9/10", 1)
	e.expectRange(e.do("GET", "/p", "Range", "bytes=6-8"), 206, "678", "bytes 6-8/10", 1)
	e.expectRange(e.do("GET", "/p", "Range", "bytes=6-"), 206, "6789", "bytes 6-9/10", 1)
	e.expectRange(e.do("GET", "/p", "Range", "bytes=-1"), 206, "9", "bytes 9-9/10", 1)
	e.expectRange(e.do("GET", "/p", "Range", "bytes=6-100"), 206, "6789", "bytes 6-9/10", 1)
	ex := e.do("GET", "/p", "Range", "bytes=0-1")
	if e.hits() != 2 || !strings.Contains(cacheStatus(ex), "fwd=partial") {
		t.Fatalf("range outside the stored bytes: origin %d, Cache-Status %q", e.hits(), cacheStatus(ex))
	}
	e.do("GET", "/p")
	if e.hits() != 3 {
		t.Fatalf("full request: origin %d, want 3", e.hits())
	}
}

// TestPartialCombined combines two 206s with the same strong ETag into a complete response,
// in memory and on disk (surviving a restart), and does not combine across ETags.
func TestPartialCombined(t *testing.T) {
	const full = "0123456789abcdefghij"
	for _, disk := range []bool{false, true} {
		opts := Options{}
		if disk {
			opts = Options{Dir: t.TempDir(), MemorySize: 1 << 20, MemoryMaxObject: 4}
		}
		e := newEnv(t, opts, rangeOrigin(full, `"v1"`))
		e.expectRange(e.do("GET", "/c", "Range", "bytes=0-7"), 206, full[:8], "bytes 0-7/20", 1)
		e.expectRange(e.do("GET", "/c", "Range", "bytes=12-"), 206, full[12:], "bytes 12-19/20", 2)  // a gap: replaces
		e.expectRange(e.do("GET", "/c", "Range", "bytes=5-13"), 206, full[5:14], "bytes 5-13/20", 3) // joins 12-19
		e.expectRange(e.do("GET", "/c", "Range", "bytes=6-19"), 206, full[6:], "bytes 6-19/20", 3)   // from 5-19
		e.expectRange(e.do("GET", "/c", "Range", "bytes=0-5"), 206, full[:6], "bytes 0-5/20", 4)     // completes it
		e.expectRange(e.do("GET", "/c"), 200, full, "", 4)
		e.expectRange(e.do("GET", "/c", "Range", "bytes=2-3"), 206, "23", "bytes 2-3/20", 4)
		if disk {
			now := e.clock.Now()
			e.c.Close()
			e = newEnv(t, opts, rangeOrigin(full, `"v1"`))
			e.clock.t = now
			e.expectRange(e.do("GET", "/c"), 200, full, "", 0)
		}
	}

	etag := `"a"`
	e := newEnv(t, Options{}, func(r *message.Request) originResp { return rangeOrigin(full, etag)(r) })
	e.do("GET", "/d", "Range", "bytes=0-9")
	etag = `"b"`
	e.do("GET", "/d", "Range", "bytes=10-19")
	e.do("GET", "/d")
	if e.hits() != 3 {
		t.Fatalf("different ETags were combined: origin %d, want 3", e.hits())
	}
}

// TestPartialCombinedWithinMaxObjectSize: two partials whose union would be larger than the
// policy's largest object are not combined; the later one replaces the earlier. (Combining
// them let a client that fetches a large file by ranges, as video players do, grow one
// object past the limit, each step copying it whole in memory.)
func TestPartialCombinedWithinMaxObjectSize(t *testing.T) {
	const full = "0123456789abcdefghij"
	e := newEnv(t, Options{Policy: &Policy{MaxObjectSize: 10}}, rangeOrigin(full, `"v1"`))
	e.expectRange(e.do("GET", "/c", "Range", "bytes=0-7"), 206, full[:8], "bytes 0-7/20", 1)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=5-13"), 206, full[5:14], "bytes 5-13/20", 2) // 0-13 would be 14 bytes
	e.expectRange(e.do("GET", "/c", "Range", "bytes=6-13"), 206, full[6:14], "bytes 6-13/20", 2)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=0-3"), 206, full[:4], "bytes 0-3/20", 3)
}

// TestPartialNotStored: 206s that cannot be used later are passed through unstored.
func TestPartialNotStored(t *testing.T) {
	for _, cr := range []string{"bytes 0-4/*", "bytes 0-4", "bytes 5-4/10", "bytes 0-10/10", "items 0-4/10"} {
		e := newEnv(t, Options{}, fixed(originResp{status: 206, header: []string{"Cache-Control", "max-age=3600", "Content-Range", cr}, body: "01234"}))
		e.do("GET", "/", "Range", "bytes=0-4")
		e.do("GET", "/", "Range", "bytes=0-4")
		if e.hits() != 2 {
			t.Errorf("Content-Range %q: stored", cr)
		}
	}
}

// TestPartialCompletedByFullRequest: with the beginning of a response stored, a request for
// the whole asks the origin for the rest only and gets the whole 200; it is then stored
// complete. Memory and disk-only.
func TestPartialCompletedByFullRequest(t *testing.T) {
	const full = "0123456789abcdefghij"
	for _, opts := range []Options{{}, {Dir: t.TempDir(), MemorySize: 1 << 20, MemoryMaxObject: 4}} {
		e := newEnv(t, opts, rangeOrigin(full, `"v1"`))
		e.expectRange(e.do("GET", "/c", "Range", "bytes=0-7"), 206, full[:8], "bytes 0-7/20", 1)
		ex := e.do("GET", "/c")
		e.expectRange(ex, 200, full, "", 2)
		if got, want := e.o.lastHeader("Range"), "bytes=8-"; got != want {
			t.Fatalf("origin got Range %q, want %q", got, want)
		}
		if got := e.o.lastHeader("If-Range"); got != `"v1"` {
			t.Fatalf("origin got If-Range %q", got)
		}
		if ex.cl != int64(len(full)) {
			t.Fatalf("Content-Length %d", ex.cl)
		}
		e.expectRange(e.do("GET", "/c"), 200, full, "", 2)
		e.expectRange(e.do("GET", "/c", "Range", "bytes=10-"), 206, full[10:], "bytes 10-19/20", 2)
	}

	// The representation changed meanwhile: If-Range makes the origin send the whole new one.
	etag := `"old"`
	e := newEnv(t, Options{}, func(r *message.Request) originResp { return rangeOrigin(full, etag)(r) })
	e.do("GET", "/n", "Range", "bytes=0-7")
	etag = `"new"`
	e.expectRange(e.do("GET", "/n"), 200, full, "", 2)
	e.expectRange(e.do("GET", "/n"), 200, full, "", 2)

	// A weak ETag, or a client conditional, asks for the whole response.
	e = newEnv(t, Options{}, rangeOrigin(full, `W/"w"`))
	e.do("GET", "/w", "Range", "bytes=0-7")
	e.expectRange(e.do("GET", "/w"), 200, full, "", 2)
	if e.o.lastHeader("Range") != "" {
		t.Fatalf("weak ETag: origin got Range %q", e.o.lastHeader("Range"))
	}
}

// TestPartialAdjacentRangesWithinMaxObjectSize: combining never makes an object larger than the
// policy's max_object_size, however many adjacent ranges a client asks for.
func TestPartialAdjacentRangesWithinMaxObjectSize(t *testing.T) {
	const full = "0123456789abcdefghij"
	e := newEnv(t, Options{Policy: &Policy{MaxObjectSize: 10}}, rangeOrigin(full, `"v1"`))
	e.expectRange(e.do("GET", "/c", "Range", "bytes=0-7"), 206, full[:8], "bytes 0-7/20", 1)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=8-15"), 206, full[8:16], "bytes 8-15/20", 2) // 16 bytes together: kept apart
	e.expectRange(e.do("GET", "/c", "Range", "bytes=8-15"), 206, full[8:16], "bytes 8-15/20", 2)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=0-15"), 206, full[:16], "bytes 0-15/20", 3)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=16-19"), 206, full[16:], "bytes 16-19/20", 4)
	e.expectRange(e.do("GET", "/c", "Range", "bytes=12-19"), 206, full[12:], "bytes 12-19/20", 5) // 16-19 and 12-19 combine to 8 bytes
	e.expectRange(e.do("GET", "/c", "Range", "bytes=14-17"), 206, full[14:18], "bytes 14-17/20", 5)
	e.expectRange(e.do("GET", "/c"), 200, full, "", 6)
}
