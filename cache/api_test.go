package cache

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

func apiReq(url string, hdr ...string) *message.Request {
	r := &message.Request{Method: "GET", Scheme: "https", Authority: "a.test", Target: url}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func apiResp(status int, hdr ...string) *message.Response {
	r := &message.Response{Status: status}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return r
}

func matchBody(t *testing.T, c *Cache, ns string, req *message.Request) (int, string, *message.Response) {
	t.Helper()
	resp, ok := c.Match(context.Background(), ns, req)
	if !ok {
		return 0, "", nil
	}
	var b []byte
	if resp.Body != nil {
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return resp.Status, string(b), resp
}

func TestCacheAPI(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const ns = "worker/a/default"
	if err := c.Put(ns, apiReq("/x"), apiResp(200, "Cache-Control", "max-age=60", "ETag", `"v1"`), []byte("hello world")); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := matchBody(t, c, ns, apiReq("/x")); st != 200 || body != "hello world" {
		t.Fatalf("match: %d %q", st, body)
	}
	if st, _, _ := matchBody(t, c, ns, apiReq("/x", "If-None-Match", `"v1"`)); st != 304 {
		t.Errorf("conditional match: got %d, want 304", st)
	}
	if st, body, _ := matchBody(t, c, ns, apiReq("/x", "Range", "bytes=0-4")); st != 206 || body != "hello" {
		t.Errorf("range match: got %d %q, want 206 hello", st, body)
	}
	// Another namespace (another worker, or another named cache) sees nothing, and its
	// delete removes nothing.
	if st, _, _ := matchBody(t, c, "worker/b/default", apiReq("/x")); st != 0 {
		t.Errorf("other namespace matched")
	}
	if c.Delete("worker/b/default", apiReq("/x")) {
		t.Errorf("other namespace deleted")
	}
	// Nor does the proxy's key space: a request through the proxy for the same URL is
	// keyed apart (appendKey holds the scheme where the API key holds \x01).
	if k, _ := apiKey(ns, apiReq("/x")); string(appendKey(nil, apiReq("/x"), defaultPolicy)) == string(k) {
		t.Fatal("API and proxy keys collide")
	}
	// Expired: not matched.
	now = now.Add(61 * time.Second)
	if st, _, _ := matchBody(t, c, ns, apiReq("/x")); st != 0 {
		t.Errorf("stale response matched")
	}
	// Vary.
	if err := c.Put(ns, apiReq("/v", "Accept-Language", "fr"), apiResp(200, "Cache-Control", "max-age=60", "Vary", "Accept-Language"), []byte("bonjour")); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := matchBody(t, c, ns, apiReq("/v", "Accept-Language", "fr")); body != "bonjour" {
		t.Errorf("vary match: %q", body)
	}
	if st, _, _ := matchBody(t, c, ns, apiReq("/v", "Accept-Language", "de")); st != 0 {
		t.Errorf("vary mismatch matched")
	}
	if !c.Delete(ns, apiReq("/v")) {
		t.Errorf("delete found nothing")
	}
	if st, _, _ := matchBody(t, c, ns, apiReq("/v", "Accept-Language", "fr")); st != 0 {
		t.Errorf("deleted response matched")
	}
	// Refusals.
	var ns2 *NotStoredError
	for _, tc := range []struct {
		req  *message.Request
		resp *message.Response
		want error
	}{
		{&message.Request{Method: "POST", Scheme: "https", Authority: "a.test", Target: "/p"}, apiResp(200, "Cache-Control", "max-age=60"), ErrPutMethod},
		{apiReq("/p"), apiResp(206, "Content-Range", "bytes 0-1/10"), ErrPutPartial},
		{apiReq("/p"), apiResp(200, "Vary", "*", "Cache-Control", "max-age=60"), ErrPutVary},
		{apiReq("/p"), apiResp(200, "Cache-Control", "no-store"), &NotStoredError{"no-store"}},
		{apiReq("/p"), apiResp(200, "Cache-Control", "private, max-age=60"), &NotStoredError{"private"}},
		{apiReq("/p"), apiResp(200, "Cache-Control", "max-age=60", "Set-Cookie", "a=b"), &NotStoredError{"set-cookie"}},
	} {
		err := c.Put(ns, tc.req, tc.resp, []byte("x"))
		if errors.As(tc.want, &ns2) {
			var got *NotStoredError
			if !errors.As(err, &got) || got.Reason != ns2.Reason {
				t.Errorf("put %v: got %v, want %v", tc.resp.Header.Fields(), err, tc.want)
			}
		} else if err != tc.want {
			t.Errorf("put: got %v, want %v", err, tc.want)
		}
	}
	// private="Set-Cookie": stored without the cookie.
	if err := c.Put(ns, apiReq("/c"), apiResp(200, "Cache-Control", `max-age=60, private="Set-Cookie"`, "Set-Cookie", "s=1"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	_, _, resp := matchBody(t, c, ns, apiReq("/c"))
	if resp == nil || resp.Header.Has("Set-Cookie") || resp.Header.Get("Cache-Control") != "max-age=60" {
		t.Errorf("private=Set-Cookie: %v", resp)
	}
	if p := c.PurgeNamespace(ns); p.Objects == 0 {
		t.Errorf("purge namespace removed nothing")
	}
}
