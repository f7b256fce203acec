package cache

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

func fixed(r originResp) func(*message.Request) originResp {
	return func(*message.Request) originResp { return r }
}

func TestMaxAgeHitThenExpire(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=60"}, body: "hello"}))
	ex := e.do("GET", "/a")
	e.expect(ex, 200, "hello", 1)
	if got := cacheStatus(ex); got != "verge; fwd=uri-miss;stored" {
		t.Fatalf("Cache-Status %q", got)
	}
	e.clock.advance(30 * time.Second)
	ex = e.do("GET", "/a")
	e.expect(ex, 200, "hello", 1)
	if got := cacheStatus(ex); got != "verge; hit;ttl=30" {
		t.Fatalf("Cache-Status %q", got)
	}
	if got := ex.header.Get("Age"); got != "30" {
		t.Fatalf("Age %q, want 30", got)
	}
	e.clock.advance(31 * time.Second)
	e.expect(e.do("GET", "/a"), 200, "hello", 2)
}

func TestSMaxAgeWinsOverMaxAge(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=1000, s-maxage=10"}, body: "x"}))
	e.do("GET", "/")
	e.clock.advance(11 * time.Second)
	e.expect(e.do("GET", "/"), 200, "x", 2)
}

func TestExpiresAndDate(t *testing.T) {
	var e *env
	e = newEnv(t, Options{}, func(*message.Request) originResp {
		now := e.clock.Now()
		return originResp{status: 200, header: []string{"Date", httpDate(now), "Expires", httpDate(now.Add(20 * time.Second))}, body: "x"}
	})
	e.do("GET", "/")
	e.clock.advance(10 * time.Second)
	e.expect(e.do("GET", "/"), 200, "x", 1)
	e.clock.advance(11 * time.Second)
	e.expect(e.do("GET", "/"), 200, "x", 2)
}

func TestInvalidExpiresIsStale(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Expires", "0", "ETag", `"v"`}, body: "x"}))
	e.do("GET", "/")
	e.do("GET", "/")
	if e.hits() != 2 {
		t.Fatalf("origin saw %d, want 2", e.hits())
	}
}

func TestHeuristicFreshness(t *testing.T) {
	var e *env
	e = newEnv(t, Options{}, func(*message.Request) originResp {
		now := e.clock.Now()
		return originResp{status: 200, header: []string{"Date", httpDate(now), "Last-Modified", httpDate(now.Add(-100 * time.Second))}, body: "x"}
	})
	e.do("GET", "/")
	e.clock.advance(9 * time.Second) // 10% of 100s = 10s
	e.expect(e.do("GET", "/"), 200, "x", 1)
	e.clock.advance(2 * time.Second)
	e.do("GET", "/")
	if e.hits() != 2 {
		t.Fatalf("origin saw %d, want 2 after heuristic lifetime", e.hits())
	}
}

func TestPolicyTTLAndStatuses(t *testing.T) {
	e := newEnv(t, Options{Policy: &Policy{TTL: map[int]time.Duration{404: time.Minute}, Statuses: []int{404}}},
		func(r *message.Request) originResp {
			if r.Target == "/ok" {
				return originResp{status: 200, header: []string{"Cache-Control", "max-age=60"}, body: "ok"}
			}
			return originResp{status: 404, body: "nf"}
		})
	e.do("GET", "/missing")
	e.expect(e.do("GET", "/missing"), 404, "nf", 1)
	e.do("GET", "/ok")
	e.expect(e.do("GET", "/ok"), 200, "ok", 3) // 200 not in Statuses
}

func TestAgeFromUpstream(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=60", "Age", "50"}, body: "x"}))
	e.do("GET", "/")
	e.clock.advance(5 * time.Second)
	ex := e.do("GET", "/")
	if ex.header.Get("Age") != "55" {
		t.Fatalf("Age %q, want 55", ex.header.Get("Age"))
	}
	e.clock.advance(6 * time.Second)
	e.expect(e.do("GET", "/"), 200, "x", 2)
}

func TestNoStorePrivateAuthorization(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cc     string
		reqHdr []string
		stored bool
	}{
		{"no-store", "no-store, max-age=60", nil, false},
		{"private", "private, max-age=60", nil, false},
		{"request no-store", "max-age=60", []string{"Cache-Control", "no-store"}, false},
		{"authorization", "max-age=60", []string{"Authorization", "Bearer x"}, false},
		{"authorization public", "public, max-age=60", []string{"Authorization", "Bearer x"}, true},
		{"authorization s-maxage", "s-maxage=60", []string{"Authorization", "Bearer x"}, true},
		{"authorization must-revalidate", "must-revalidate, max-age=60", []string{"Authorization", "Bearer x"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", tc.cc}, body: "x"}))
			e.do("GET", "/", tc.reqHdr...)
			e.expectCached(e.do("GET", "/", tc.reqHdr...), tc.stored, tc.name)
		})
	}
}

func TestNoCacheRevalidatesEveryTime(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		if r.Header.Get("If-None-Match") == `"v1"` {
			return originResp{status: 304, header: []string{"Cache-Control", "no-cache", "ETag", `"v1"`}}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "no-cache", "ETag", `"v1"`}, body: "body"}
	})
	e.expect(e.do("GET", "/"), 200, "body", 1)
	ex := e.do("GET", "/")
	e.expect(ex, 200, "body", 2)
	if cs := cacheStatus(ex); cs != "verge; fwd=stale;fwd-status=304" {
		t.Fatalf("Cache-Status %q", cs)
	}
}

func TestRevalidationUpdatesHeaders(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		if r.Header.Get("If-None-Match") == `"v1"` && r.Header.Get("If-Modified-Since") != "" {
			return originResp{status: 304, header: []string{"Cache-Control", "max-age=100", "ETag", `"v1"`, "X-Version", "2"}}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=10", "ETag", `"v1"`,
			"Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT", "X-Version", "1", "Content-Type", "text/plain"}, body: "body"}
	})
	e.do("GET", "/")
	e.clock.advance(11 * time.Second)
	ex := e.do("GET", "/")
	e.expect(ex, 200, "body", 2)
	if ex.header.Get("X-Version") != "2" || ex.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("headers not updated from the 304: %v", ex.header.Fields())
	}
	// The new max-age=100 applies now.
	e.clock.advance(50 * time.Second)
	ex = e.do("GET", "/")
	e.expect(ex, 200, "body", 2)
	if ex.header.Get("X-Version") != "2" {
		t.Fatalf("X-Version %q after update", ex.header.Get("X-Version"))
	}
}

func TestRevalidationWithLastModifiedOnly(t *testing.T) {
	lm := "Tue, 01 Jan 2030 00:00:00 GMT"
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		if r.Header.Get("If-Modified-Since") == lm {
			return originResp{status: 304, header: []string{"Cache-Control", "max-age=10"}}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=10", "Last-Modified", lm}, body: "b"}
	})
	e.do("GET", "/")
	e.clock.advance(20 * time.Second)
	e.expect(e.do("GET", "/"), 200, "b", 2)
	e.expect(e.do("GET", "/"), 200, "b", 2)
}

func TestMustRevalidateNeverStale(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=10, must-revalidate"}, body: "x"}))
	e.do("GET", "/")
	e.clock.advance(20 * time.Second)
	e.expect(e.do("GET", "/", "Cache-Control", "max-stale=100"), 200, "x", 2)
}

func TestProxyRevalidateAndSMaxAgeBlockStale(t *testing.T) {
	for _, cc := range []string{"max-age=10, proxy-revalidate", "s-maxage=10"} {
		e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", cc + ", stale-while-revalidate=100"}, body: "x"}))
		e.do("GET", "/")
		e.clock.advance(20 * time.Second)
		e.expect(e.do("GET", "/", "Cache-Control", "max-stale"), 200, "x", 2)
	}
}

func TestRequestDirectives(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "x"}))
	e.do("GET", "/")
	e.clock.advance(50 * time.Second)
	e.expect(e.do("GET", "/", "Cache-Control", "max-age=60"), 200, "x", 1)
	e.expect(e.do("GET", "/", "Cache-Control", "max-age=40"), 200, "x", 2)
	e.clock.advance(50 * time.Second) // age 50 again after the refetch
	e.expect(e.do("GET", "/", "Cache-Control", "min-fresh=40"), 200, "x", 2)
	e.expect(e.do("GET", "/", "Cache-Control", "min-fresh=60"), 200, "x", 3)
	ex := e.do("GET", "/", "Cache-Control", "no-cache")
	e.expect(ex, 200, "x", 4)
	if cs := cacheStatus(ex); !strings.Contains(cs, "fwd=request") {
		t.Fatalf("Cache-Status %q, want fwd=request", cs)
	}
	e.expect(e.do("GET", "/", "Pragma", "no-cache"), 200, "x", 5)
	e.clock.advance(200 * time.Second)
	e.expect(e.do("GET", "/", "Cache-Control", "max-stale=50"), 200, "x", 6)
	e.clock.advance(120 * time.Second) // 20s stale
	ex = e.do("GET", "/", "Cache-Control", "max-stale=50")
	e.expect(ex, 200, "x", 6)
	if cs := cacheStatus(ex); cs != "verge; hit;ttl=-20" {
		t.Fatalf("Cache-Status %q", cs)
	}
}

func TestOnlyIfCached(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "x"}))
	e.expect(e.do("GET", "/", "Cache-Control", "only-if-cached"), 504, "", 0)
	e.do("GET", "/")
	e.expect(e.do("GET", "/", "Cache-Control", "only-if-cached"), 200, "x", 1)
}

func TestVaryVariants(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=100", "Vary", "Accept-Encoding"}, body: "enc=" + r.Header.Get("Accept-Encoding")}
	})
	e.expect(e.do("GET", "/", "Accept-Encoding", "gzip"), 200, "enc=gzip", 1)
	e.expect(e.do("GET", "/", "Accept-Encoding", "br"), 200, "enc=br", 2)
	e.expect(e.do("GET", "/", "Accept-Encoding", "gzip"), 200, "enc=gzip", 2)
	e.expect(e.do("GET", "/", "Accept-Encoding", " br "), 200, "enc=br", 2)
	ex := e.do("GET", "/")
	e.expect(ex, 200, "enc=", 3)
	if cs := cacheStatus(ex); !strings.Contains(cs, "vary-miss") {
		t.Fatalf("Cache-Status %q, want vary-miss", cs)
	}
}

func TestVaryStarNotStored(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100", "Vary", "*"}, body: "x"}))
	e.do("GET", "/")
	e.expect(e.do("GET", "/"), 200, "x", 2)
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		if r.Method == "POST" {
			return originResp{status: 201, header: []string{"Location", "/other", "Content-Location", "http://elsewhere.test/a"}, body: "made"}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: r.Target}
	})
	e.do("GET", "/a")
	e.do("GET", "/other")
	e.do("GET", "/a")
	e.do("GET", "/other")
	if e.hits() != 2 {
		t.Fatalf("origin saw %d, want 2", e.hits())
	}
	e.expect(e.do("POST", "/a"), 201, "made", 3)
	e.expect(e.do("GET", "/a"), 200, "/a", 4)
	e.expect(e.do("GET", "/other"), 200, "/other", 5)
}

func TestUnsafeMethodErrorDoesNotInvalidate(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		if r.Method == "DELETE" {
			return originResp{status: 500, body: "no"}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "x"}
	})
	e.do("GET", "/a")
	e.do("DELETE", "/a")
	e.expect(e.do("GET", "/a"), 200, "x", 2)
}

func TestClientConditionalFromCache(t *testing.T) {
	lm := "Tue, 01 Jan 2030 00:00:00 GMT"
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100", "ETag", `"abc"`, "Last-Modified", lm}, body: "x"}))
	e.do("GET", "/")
	e.expect(e.do("GET", "/", "If-None-Match", `W/"abc"`), 304, "", 1)
	e.expect(e.do("GET", "/", "If-None-Match", `"zzz", "abc"`), 304, "", 1)
	e.expect(e.do("GET", "/", "If-None-Match", `"zzz"`), 200, "x", 1)
	e.expect(e.do("GET", "/", "If-Modified-Since", lm), 304, "", 1)
	e.expect(e.do("GET", "/", "If-Modified-Since", "Mon, 31 Dec 2029 00:00:00 GMT"), 200, "x", 1)
	ex := e.do("GET", "/", "If-None-Match", `"abc"`)
	if ex.header.Get("ETag") != `"abc"` {
		t.Fatalf("304 without ETag: %v", ex.header.Fields())
	}
}

func TestRangeFromCache(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100", "ETag", `"r"`}, body: "0123456789"}))
	e.do("GET", "/")
	for _, tc := range []struct {
		rng, cr, body string
		status        int
	}{
		{"bytes=2-4", "bytes 2-4/10", "234", 206},
		{"bytes=7-", "bytes 7-9/10", "789", 206},
		{"bytes=-3", "bytes 7-9/10", "789", 206},
		{"bytes=5-100", "bytes 5-9/10", "56789", 206},
		{"bytes=10-", "bytes */10", "", 416},
		{"bytes=0-1,4-5", "", "0123456789", 200},
		{"items=1-2", "", "0123456789", 200},
	} {
		ex := e.do("GET", "/", "Range", tc.rng)
		e.expect(ex, tc.status, tc.body, 1)
		if got := ex.header.Get("Content-Range"); got != tc.cr {
			t.Fatalf("%s: Content-Range %q, want %q", tc.rng, got, tc.cr)
		}
	}
	e.expect(e.do("GET", "/", "Range", "bytes=0-1", "If-Range", `"r"`), 206, "01", 1)
	e.expect(e.do("GET", "/", "Range", "bytes=0-1", "If-Range", `"old"`), 200, "0123456789", 1)
}

func TestStaleWhileRevalidate(t *testing.T) {
	version := "v1"
	e := newEnv(t, Options{}, func(*message.Request) originResp {
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=10, stale-while-revalidate=30"}, body: version}
	})
	e.do("GET", "/")
	version = "v2"
	e.clock.advance(20 * time.Second)
	ex := e.do("GET", "/")
	if ex.body.String() != "v1" || !strings.Contains(cacheStatus(ex), "hit") {
		t.Fatalf("got %q %q, want the stale v1 served at once", ex.body.String(), cacheStatus(ex))
	}
	waitFor(t, func() bool { return e.hits() == 2 })
	waitFor(t, func() bool { return e.do("GET", "/", "Cache-Control", "only-if-cached").body.String() == "v2" })
	e.clock.advance(50 * time.Second) // beyond the window: a plain miss
	e.expect(e.do("GET", "/"), 200, "v2", 3)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second) // a failure guard for a busy machine
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStaleIfError(t *testing.T) {
	fail := 0
	e := newEnv(t, Options{}, func(*message.Request) originResp {
		switch fail {
		case 1:
			return originResp{status: 503, body: "down"}
		case 2:
			return originResp{err: &fault.Error{Source: fault.Upstream, Kind: fault.ConnectRefused, Cause: errors.New("refused")}}
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=10, stale-if-error=60"}, body: "good"}
	})
	e.do("GET", "/")
	e.clock.advance(20 * time.Second)
	fail = 1
	ex := e.do("GET", "/")
	e.expect(ex, 200, "good", 2)
	if cs := cacheStatus(ex); cs != "verge; fwd=stale;fwd-status=503" {
		t.Fatalf("Cache-Status %q", cs)
	}
	fail = 2
	e.expect(e.do("GET", "/"), 200, "good", 3)
	e.clock.advance(60 * time.Second) // beyond the window
	fail = 1
	e.expect(e.do("GET", "/"), 503, "down", 4)
}

func TestHeadServedFromGet(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "hello"}))
	e.do("GET", "/")
	ex := e.do("HEAD", "/")
	e.expect(ex, 200, "", 1)
	if ex.cl != 5 {
		t.Fatalf("HEAD Content-Length %d, want 5", ex.cl)
	}
}

func TestBypassAndKeyRules(t *testing.T) {
	e := newEnv(t, Options{Policy: &Policy{BypassCookies: []string{"session"}, BypassHeaders: []string{"X-Debug"}, ExcludeQuery: []string{"utm_source"}}},
		fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "x"}))
	e.do("GET", "/p?a=1&utm_source=mail")
	e.expect(e.do("GET", "/p?a=1&utm_source=web"), 200, "x", 1)
	e.expect(e.do("GET", "/p?a=2"), 200, "x", 2)
	ex := e.do("GET", "/p?a=1", "Cookie", "theme=dark; session=abc")
	e.expect(ex, 200, "x", 3)
	if cs := cacheStatus(ex); cs != "verge; fwd=bypass" {
		t.Fatalf("Cache-Status %q", cs)
	}
	e.expect(e.do("GET", "/p?a=1", "X-Debug", "1"), 200, "x", 4)
	e.expect(e.do("GET", "/p?a=1", "Cookie", "theme=dark"), 200, "x", 4)
}

func TestMaxObjectSize(t *testing.T) {
	big := strings.Repeat("b", 100)
	e := newEnv(t, Options{Policy: &Policy{MaxObjectSize: 50}}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: big}))
	e.do("GET", "/")
	e.expect(e.do("GET", "/"), 200, big, 2)
}

func TestPurge(t *testing.T) {
	e := newEnv(t, Options{}, func(r *message.Request) originResp {
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=100", "Cache-Tag", "all, " + strings.Trim(r.Path(), "/")}, body: r.Target}
	})
	for _, p := range []string{"/img/a", "/img/b", "/css/c"} {
		e.do("GET", p)
	}
	if n, err := e.c.PurgeURL("https://EXAMPLE.test/img/a"); err != nil || n.Objects != 1 {
		t.Fatalf("PurgeURL removed %d, want 1", n)
	}
	e.expect(e.do("GET", "/img/a"), 200, "/img/a", 4)
	if n, err := e.c.PurgePrefix("http://example.test/img/"); err != nil || n.Objects != 2 {
		t.Fatalf("PurgePrefix removed %d, want 2", n)
	}
	e.expect(e.do("GET", "/css/c"), 200, "/css/c", 4)
	if n := e.c.PurgeTag("css/c"); n.Objects != 1 {
		t.Fatalf("PurgeTag removed %d, want 1", n)
	}
	e.expect(e.do("GET", "/css/c"), 200, "/css/c", 5)
}
