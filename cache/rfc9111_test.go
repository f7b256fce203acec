package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// TestExpiresDateFormats runs Expires values through the cache: the three HTTP-date formats
// (with names and zone in any case) make a response fresh; anything else is invalid and so
// already expired (RFC 9111 section 5.3).
func TestExpiresDateFormats(t *testing.T) {
	for _, tc := range []struct {
		expires string
		cached  bool
	}{
		{"Thu, 18 Aug 2050 02:01:18 GMT", true},
		{"Thu, 18 Aug 2050 02:01:18 gMT", true},
		{"THU, 18 AUG 2050 02:01:18 GMT", true},
		{"Thursday, 18-Aug-50 02:01:18 GMT", true},
		{"Thu Aug  8 02:01:18 2050", true},
		{"Thu, 18 Aug 2050 02:01:18 UTC", false},
		{"Thu, 18 Aug 2050 02:01:18 AEST", false},
		{"Thu, 18  Aug  2050 02:01:18 GMT", false},
		{"Thu, 18 Aug 2050 2:01:18 GMT", false},
		{"Thu, 18 Aug 50 02:01:18 GMT", false},
		{"Thu 18 Aug 2050 02:01:18 GMT", false},
		{"Thu, 18-Aug-2050 02:01:18 GMT", false},
		{"Thu, 18 Aug 2050 02.01.18 GMT", false},
	} {
		var e *env
		e = newEnv(t, Options{}, func(*message.Request) originResp {
			return originResp{status: 200, header: []string{"Date", httpDate(e.clock.Now()), "Expires", tc.expires}, body: "x"}
		})
		e.do("GET", "/")
		e.clock.advance(time.Second)
		e.expectCached(e.do("GET", "/"), tc.cached, "Expires "+tc.expires)
	}
}

// TestAgeListUsesFirstMember: "Age: 7200, 0" means 7200 (RFC 9111 section 5.1), which makes a
// max-age=3600 response stale on arrival.
func TestAgeListUsesFirstMember(t *testing.T) {
	for _, tc := range []struct {
		age    []string
		cached bool
	}{
		{[]string{"7200, 0"}, false},
		{[]string{"7200,0"}, false},
		{[]string{"7200", "0"}, false},
		{[]string{"0, 7200"}, true},
		{[]string{"abc"}, true},
	} {
		var e *env
		e = newEnv(t, Options{}, func(*message.Request) originResp {
			h := []string{"Date", httpDate(e.clock.Now()), "Cache-Control", "max-age=3600"}
			for _, a := range tc.age {
				h = append(h, "Age", a)
			}
			return originResp{status: 200, header: h, body: "x"}
		})
		e.do("GET", "/")
		e.expectCached(e.do("GET", "/"), tc.cached, fmt.Sprintf("Age %q", tc.age))
	}
}

// TestUnknownStatusWithExplicitFreshness stores statuses Verge does not know when the
// response gives explicit freshness (RFC 9111 section 3), and only then.
func TestUnknownStatusWithExplicitFreshness(t *testing.T) {
	for _, tc := range []struct {
		status int
		header []string
		cached bool
	}{
		{299, []string{"Cache-Control", "max-age=3600"}, true},
		{499, []string{"Cache-Control", "max-age=3600"}, true},
		{599, []string{"Cache-Control", "s-maxage=3600"}, true},
		{299, []string{"Last-Modified", "Thu, 01 Jan 2015 00:00:00 GMT"}, false},
		{299, nil, false},
		// must-understand: stored (ignoring no-store) only for a status Verge understands.
		{200, []string{"Cache-Control", "max-age=3600, must-understand, no-store"}, true},
		{299, []string{"Cache-Control", "max-age=3600, must-understand, no-store"}, false},
		{299, []string{"Cache-Control", "max-age=3600, must-understand"}, false},
		{200, []string{"Cache-Control", "max-age=3600, no-store"}, false},
	} {
		e := newEnv(t, Options{}, fixed(originResp{status: tc.status, header: tc.header, body: "x"}))
		e.do("GET", "/")
		ex := e.do("GET", "/")
		if ex.status != tc.status {
			t.Fatalf("status %d, want %d", ex.status, tc.status)
		}
		e.expectCached(ex, tc.cached, fmt.Sprintf("%d %q", tc.status, tc.header))
	}
}

// TestVaryNormalisesListWhitespace: request values that differ only in whitespace around
// list members select the same stored response.
func TestVaryNormalisesListWhitespace(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=3600", "Vary", "Accept-Language"}, body: "x"}))
	e.do("GET", "/", "Accept-Language", "en, de")
	e.expect(e.do("GET", "/", "Accept-Language", " en ,   de"), 200, "x", 1)
	e.expect(e.do("GET", "/", "Accept-Language", "en,de"), 200, "x", 1)
	e.expect(e.do("GET", "/", "Accept-Language", "en", "Accept-Language", "de"), 200, "x", 1)
	e.expect(e.do("GET", "/", "Accept-Language", "en, fr"), 200, "x", 2)
	e.expect(e.do("GET", "/", "Accept-Language", "de, en"), 200, "x", 3)
}
