package cache

import (
	"testing"

	"github.com/verge-edge/verge/message"
)

// TestCDNCacheControl checks RFC 9213: a valid targeted field replaces Cache-Control and
// Expires for Verge; an invalid one is ignored.
func TestCDNCacheControl(t *testing.T) {
	const future, past = "Thu, 18 Aug 2050 02:01:18 GMT", "Thu, 18 Aug 2005 02:01:18 GMT"
	for _, tc := range []struct {
		name   string
		header []string
		cached bool
	}{
		{"max-age", []string{"CDN-Cache-Control", "max-age=3600"}, true},
		{"max-age 2^31", []string{"CDN-Cache-Control", "max-age=2147483648"}, true},
		{"max-age huge", []string{"CDN-Cache-Control", "max-age=99999999999"}, true},
		{"max-age 0", []string{"CDN-Cache-Control", "max-age=0"}, false},
		{"age over max-age", []string{"CDN-Cache-Control", "max-age=3600", "Age", "7200"}, false},
		{"extension", []string{"CDN-Cache-Control", "foobar, max-age=3600"}, true},
		{"key case", []string{"CDN-Cache-Control", "MaX-aGe=3600"}, true},
		{"past Expires ignored", []string{"CDN-Cache-Control", "max-age=3600", "Expires", past}, true},
		{"invalid Expires ignored", []string{"CDN-Cache-Control", "max-age=3600", "Expires", "0"}, true},
		{"future Expires ignored", []string{"CDN-Cache-Control", "max-age=0", "Expires", future}, false},
		{"beats short Cache-Control", []string{"Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age=3600"}, true},
		{"beats long Cache-Control", []string{"Cache-Control", "max-age=3600", "CDN-Cache-Control", "max-age=1"}, false},
		{"private", []string{"CDN-Cache-Control", "private", "Cache-Control", "max-age=10000", "Expires", future}, false},
		{"no-cache", []string{"CDN-Cache-Control", "no-cache", "Cache-Control", "max-age=10000", "Expires", future}, false},
		{"no-store", []string{"Cache-Control", "max-age=10000", "CDN-Cache-Control", "no-store", "Expires", future}, false},
		{"overrides no-store", []string{"Cache-Control", "no-store", "CDN-Cache-Control", "max-age=10000"}, true},
		{"invalid: unknown type", []string{"CDN-Cache-Control", "max-age=10000, &&&&&", "Cache-Control", "no-store"}, false},
		{"invalid: wrong type", []string{"CDN-Cache-Control", `max-age="10000"`, "Cache-Control", "no-store"}, false},
		{"invalid: space before =", []string{"Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age =100"}, false},
		{"invalid: space after =", []string{"Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age= 100"}, false},
		{"invalid falls back", []string{"Cache-Control", "max-age=3600", "CDN-Cache-Control", "max-age=,"}, true},
		{"own field first", []string{"Verge-CDN-Cache-Control", "max-age=3600", "CDN-Cache-Control", "no-store"}, true},
		{"own field no-store", []string{"Verge-CDN-Cache-Control", "no-store", "CDN-Cache-Control", "max-age=3600"}, false},
		{"params and inner list", []string{"CDN-Cache-Control", `max-age=3600;a=1, x=(1 "b" tok);q, y=:aGk=:, z=?0, w=1.5`}, true},
	} {
		e := newEnv(t, Options{}, fixed(originResp{status: 200, header: append([]string{"Date", httpDate(clockStart)}, tc.header...), body: "x"}))
		e.do("GET", "/")
		e.clock.advance(2e9)
		e.expectCached(e.do("GET", "/"), tc.cached, tc.name)
	}
}

// TestTargetedFieldForwarding: CDN-Cache-Control is forwarded downstream; Verge's own field
// (default name or the route's) is removed from stored, revalidated and passed responses.
func TestTargetedFieldForwarding(t *testing.T) {
	own := "Acme-Cache-Control"
	for _, pol := range []*Policy{nil, {TargetedField: own}} {
		field := DefaultTargetedField
		if pol != nil {
			field = own
		}
		e := newEnv(t, Options{Policy: pol}, func(r *message.Request) originResp {
			if r.Header.Has("If-None-Match") {
				return originResp{status: 304, header: []string{field, "max-age=60", "ETag", `"1"`}}
			}
			cc := "max-age=1"
			if r.Target == "/nostore" {
				cc = "no-store"
			}
			return originResp{status: 200, header: []string{"CDN-Cache-Control", "max-age=5", field, cc, "ETag", `"1"`}, body: "x"}
		})
		check := func(ex *recExchange, what string) {
			t.Helper()
			if ex.header.Has(field) {
				t.Fatalf("%s: %s forwarded", what, field)
			}
			if ex.header.Get("CDN-Cache-Control") != "max-age=5" {
				t.Fatalf("%s: CDN-Cache-Control %q, want forwarded", what, ex.header.Get("CDN-Cache-Control"))
			}
		}
		check(e.do("GET", "/"), "miss")
		check(e.do("GET", "/"), "hit")
		e.clock.advance(2e9) // stale by the own field (max-age=1), though CDN-Cache-Control says 5
		ex := e.do("GET", "/")
		check(ex, "revalidated")
		if e.hits() != 2 {
			t.Fatalf("origin saw %d requests, want 2", e.hits())
		}
		e.clock.advance(30e9) // fresh by the 304's own field
		check(e.do("GET", "/"), "hit after 304")
		if e.hits() != 2 {
			t.Fatalf("origin saw %d requests, want 2", e.hits())
		}
		check(e.do("GET", "/nostore"), "not stored")
	}
}

// FuzzTargetedField checks the Structured Field Dictionary parser never panics and that what
// it accepts gives sane directives.
func FuzzTargetedField(f *testing.F) {
	for _, s := range []string{"max-age=3600", `max-age=3600;a=1, x=(1 "b" tok);q, y=:aGk=:, z=?0, w=1.5`, "no-store", "max-age =1", `private="x"`, "a,", "*k=-12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var h message.Header
		h.Add("CDN-Cache-Control", v)
		var d directives
		if parseTargeted(&h, "CDN-Cache-Control", &d) {
			if !d.targeted || d.maxAge < -1 || d.maxAge > maxDelta || d.sMaxAge > maxDelta {
				t.Fatalf("%q: directives %+v", v, d)
			}
		}
	})
}

// FuzzContentRange checks parseContentRange never panics and returns consistent ranges.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-4/10", "bytes 5-4/10", "bytes */10", "bytes 0-9/10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if a, b, n, ok := parseContentRange(v); ok && (a < 0 || a > b || b >= n) {
			t.Fatalf("%q: %d-%d/%d", v, a, b, n)
		}
	})
}
