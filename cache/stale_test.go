package cache

import (
	"errors"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// TestUseStalePolicy serves stale responses on the origin failures a route lists, and only
// those, never for must-revalidate responses.
func TestUseStalePolicy(t *testing.T) {
	var fail originResp
	cc := "max-age=10"
	pol := &Policy{UseStale: []string{"error", "timeout", "http_503"}}
	e := newEnv(t, Options{Policy: pol}, func(*message.Request) originResp {
		if fail.status != 0 || fail.err != nil {
			return fail
		}
		return originResp{status: 200, header: []string{"Cache-Control", cc}, body: "good"}
	})
	e.do("GET", "/")
	e.clock.advance(time.Hour) // long stale: the policy sets no window
	var n int64 = 1
	for _, tc := range []struct {
		fail   originResp
		status int
		body   string
	}{
		{originResp{status: 503, body: "down"}, 200, "good"},
		{originResp{status: 500, body: "boom"}, 500, "boom"},
		{originResp{status: 404, body: "gone"}, 404, "gone"},
		{originResp{err: &fault.Error{Source: fault.Upstream, Kind: fault.ConnectionClosed, Cause: errors.New("closed")}}, 200, "good"},
		{originResp{err: &fault.Error{Source: fault.Upstream, Kind: fault.ReadTimeout, Cause: errors.New("slow")}}, 200, "good"},
		{originResp{err: &fault.Error{Source: fault.Upstream, Kind: fault.InvalidResponse, Cause: errors.New("bad")}}, 502, ""},
	} {
		fail = tc.fail
		n++
		ex := e.do("GET", "/")
		if ex.status != tc.status || (tc.body != "" && ex.body.String() != tc.body) || e.hits() != n {
			t.Fatalf("origin %d/%v: got %d %q after %d origin requests, want %d %q after %d (%s)",
				tc.fail.status, tc.fail.err, ex.status, ex.body.String(), e.hits(), tc.status, tc.body, n, cacheStatus(ex))
		}
	}

	// must-revalidate forbids it.
	fail = originResp{}
	cc = "max-age=10, must-revalidate"
	e2 := newEnv(t, Options{Policy: pol}, func(*message.Request) originResp {
		if fail.status != 0 {
			return fail
		}
		return originResp{status: 200, header: []string{"Cache-Control", cc}, body: "good"}
	})
	e2.do("GET", "/")
	e2.clock.advance(time.Minute)
	fail = originResp{status: 503, body: "down"}
	e2.expect(e2.do("GET", "/"), 503, "down", 2)
}
