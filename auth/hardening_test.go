package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

// A forward-auth service may allow by address (an inside network without credentials): the
// cached yes for an inside client must not let an outside client in.
func TestForwardAuthCacheKeyIncludesClient(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.Header.Get("X-Forwarded-For") == "10.0.0.5" {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(401)
	}))
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 30 * time.Second, Cache: time.Minute})
	if _, d := f.Check(ctx, request(), netip.MustParseAddr("10.0.0.5")); d != nil {
		t.Fatalf("inside client refused: %d", d.Status)
	}
	if _, d := f.Check(ctx, request(), netip.MustParseAddr("203.0.113.9")); d == nil || d.Status != 401 {
		t.Errorf("outside client allowed by the cached answer of an inside client: %+v", d)
	}
	// The same question again is answered from the cache.
	before := asked.Load()
	if _, d := f.Check(ctx, request(), netip.MustParseAddr("10.0.0.5")); d != nil {
		t.Fatalf("inside client refused the second time: %d", d.Status)
	}
	if asked.Load() != before {
		t.Errorf("the same question was asked again instead of answered from the cache")
	}
}

// The question carries no forwarding field of the client's (in any spelling), no field named
// by its Connection field, and Verge's own X-Forwarded-For and X-Real-IP.
func TestForwardAuthDropsClientForwardingFields(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 30 * time.Second})
	r := request("X-Real-IP", "10.0.0.5", "Forwarded", "for=10.0.0.5", "True-Client-IP", "10.0.0.5",
		"Client-IP", "10.0.0.5", "X_Forwarded_For", "10.0.0.5", "X-Forwarded-For", "10.0.0.5",
		"X-Forwarded-Prefix", "/admin", "X_Original_URI", "/admin", "Connection", "X-Secret", "X-Secret", "s",
		"Cookie", "a=b")
	r.Target = "/x/../a?q=1"
	if _, d := f.CheckPath(ctx, r, netip.MustParseAddr("203.0.113.9"), "/a"); d != nil {
		t.Fatalf("refused: %d", d.Status)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range []string{"Forwarded", "True-Client-Ip", "Client-Ip", "X_forwarded_for", "X-Forwarded-Prefix", "X_original_uri", "X-Secret"} {
		if v := seen.Values(n); len(v) != 0 {
			t.Errorf("auth service saw client-sent %s: %q", n, v)
		}
	}
	for n, want := range map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Real-Ip": "203.0.113.9",
		"X-Forwarded-Uri": "/a?q=1", "X-Original-Uri": "/a?q=1", "Cookie": "a=b"} {
		if v := seen.Values(n); len(v) != 1 || v[0] != want {
			t.Errorf("auth service saw %s %q, want %q", n, v, want)
		}
	}
}

// Every checker removes the client's identity fields in every spelling: X_Remote_User is
// HTTP_X_REMOTE_USER to a CGI-style origin, like the verified X-Remote-User.
func TestIdentityFieldsStrippedInEverySpelling(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	b := NewBasic(BasicConfig{Realm: "r", Users: map[string]string{"bob": string(hash)}, UserHeader: "X-Remote-User"})
	r := request("Authorization", basicField("bob", "pw"), "X_Remote_User", "admin", "x_remote_user", "admin")
	if _, d := b.Check(ctx, r, netip.Addr{}); d != nil {
		t.Fatal(d.Status)
	}
	if r.Header.Count("X_Remote_User") != 0 || r.Header.Count("x_remote_user") != 0 || r.Header.Get("X-Remote-User") != "bob" {
		t.Errorf("basic: fields going upstream: %v", r.Header.Fields())
	}

	k := newJWKS(t)
	key := k.addEC("e1")
	j := NewJWT(JWTConfig{JWKSURL: k.srv.URL, Audience: []string{"api"}, Algorithms: []string{"ES256"}, Leeway: time.Second,
		ClaimsToHeaders: map[string]string{"sub": "X-User"},
		CacheMin:        time.Minute, CacheMax: time.Hour, RefetchInterval: time.Hour, FetchTimeout: 30 * time.Second})
	tok := sign(t, key, jose.ES256, map[string]any{"aud": "api", "exp": time.Now().Add(time.Hour).Unix(), "sub": "alice"})
	r = request("Authorization", "Bearer "+tok, "X_User", "root")
	if _, d := j.Check(ctx, r, netip.Addr{}); d != nil {
		t.Fatal(d.Status, string(d.Body))
	}
	if r.Header.Count("X_User") != 0 || r.Header.Get("X-User") != "alice" {
		t.Errorf("jwt: fields going upstream: %v", r.Header.Fields())
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-User", "carol")
		w.WriteHeader(200)
	}))
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 30 * time.Second, CopyHeaders: []string{"X-Auth-User"}})
	r = request("X_Auth_User", "root")
	if _, d := f.Check(ctx, r, netip.Addr{}); d != nil {
		t.Fatal(d.Status)
	}
	if r.Header.Count("X_Auth_User") != 0 || r.Header.Get("X-Auth-User") != "carol" {
		t.Errorf("forward: fields going upstream: %v", r.Header.Fields())
	}
}

// Claims go upstream as the token wrote them: large integers keep every digit, a list whose
// element holds a comma is skipped (the header could not be split back), control bytes are
// refused.
func TestJWTClaimsToHeadersExact(t *testing.T) {
	k := newJWKS(t)
	key := k.addEC("e1")
	j := NewJWT(JWTConfig{JWKSURL: k.srv.URL, Audience: []string{"api"}, Algorithms: []string{"ES256"}, Leeway: time.Second,
		ClaimsToHeaders: map[string]string{"uid": "X-Uid", "groups": "X-Groups", "ok": "X-Ok", "tab": "X-Tab", "f": "X-F"},
		CacheMin:        time.Minute, CacheMax: time.Hour, RefetchInterval: time.Hour, FetchTimeout: 30 * time.Second})
	check := func(c map[string]any) map[string]string {
		c["aud"], c["exp"] = "api", time.Now().Add(time.Hour).Unix()
		r := request("Authorization", "Bearer "+sign(t, key, jose.ES256, c))
		if _, d := j.Check(ctx, r, netip.Addr{}); d != nil {
			t.Fatal(d.Status, string(d.Body))
		}
		out := map[string]string{}
		for _, n := range []string{"X-Uid", "X-Groups", "X-Ok", "X-Tab", "X-F"} {
			if v, ok := r.Header.Lookup(n); ok {
				out[n] = v
			}
		}
		return out
	}
	got := check(map[string]any{"uid": int64(1234567890123456789), "groups": []string{"dev", "ops"}, "ok": true, "f": 1.5})
	want := map[string]string{"X-Uid": "1234567890123456789", "X-Groups": "dev, ops", "X-Ok": "true", "X-F": "1.5"}
	for n, v := range want {
		if got[n] != v {
			t.Errorf("%s = %q, want %q", n, got[n], v)
		}
	}
	got = check(map[string]any{"uid": int64(1234567890123456800), "groups": []string{"dev, admin"}, "tab": "a\tb"})
	if got["X-Uid"] != "1234567890123456800" {
		t.Errorf("X-Uid = %q, want 1234567890123456800", got["X-Uid"])
	}
	if v, ok := got["X-Groups"]; ok {
		t.Errorf("a list element with a comma went upstream as %q", v)
	}
	if v, ok := got["X-Tab"]; ok {
		t.Errorf("a claim with a control byte went upstream as %q", v)
	}
}

// An allowing answer with a body does not cost a connection per question.
func TestForwardAuthReusesConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(202)
		w.Write([]byte("Accepted"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 30 * time.Second})
	const n = 20
	for range n {
		if _, d := f.Check(ctx, request(), netip.Addr{}); d != nil {
			t.Fatal(d.Status)
		}
	}
	// The transport may dial once more while a finished connection is on its way back to
	// the idle pool; one per question is the defect.
	if c := conns.Load(); c > n/4 {
		t.Errorf("%d sequential allowing answers used %d connections", n, c)
	}
}

// With the key set expired and the issuer not answering, a token whose key is cached is
// verified with the stale key at once; the refetch runs in the background.
func TestJWTStaleKeysWhileIssuerDown(t *testing.T) {
	k := newJWKS(t)
	key := k.addEC("e1")
	release := make(chan struct{})
	var hang atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-release
			return
		}
		k.srv.Config.Handler.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(release) // before srv.Close: let the hanging fetch end
	j := NewJWT(JWTConfig{JWKSURL: srv.URL, Audience: []string{"api"}, Algorithms: []string{"ES256"}, Leeway: time.Second,
		CacheMin: time.Nanosecond, CacheMax: time.Nanosecond, RefetchInterval: time.Nanosecond, FetchTimeout: time.Hour})
	tok := sign(t, key, jose.ES256, map[string]any{"aud": "api", "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := j.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	hang.Store(true)
	// A deadline far beyond any scheduling delay: without stale keys this waits for the
	// hanging fetch (FetchTimeout, an hour) and ends with the context's error.
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := range 3 {
		if _, err := j.Verify(c, tok); err != nil {
			t.Fatalf("verify %d with the issuer down: %v", i, err)
		}
	}
}

// Checkers built without a Client use DefaultClient: no redirects, no environment proxy.
func TestCheckersDefaultClient(t *testing.T) {
	j := NewJWT(JWTConfig{JWKSURL: "http://127.0.0.1:1/"})
	f := NewForward(ForwardConfig{URL: "http://127.0.0.1:1/"})
	if j.cfg.Client != DefaultClient || f.cfg.Client != DefaultClient {
		t.Fatal("a checker without a Client does not use DefaultClient")
	}
	if tr := DefaultClient.Transport.(*http.Transport); tr.Proxy != nil {
		t.Error("DefaultClient takes a proxy from the environment")
	}
	if DefaultClient.CheckRedirect == nil {
		t.Error("DefaultClient follows redirects")
	}
}

// KeyIgnore fields (the request ID) reach the service but do not make each question new.
func TestForwardAuthCacheKeyIgnore(t *testing.T) {
	var asked atomic.Int64
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		mu.Lock()
		ids = append(ids, r.Header.Get("X-Request-ID"))
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 30 * time.Second, Cache: time.Minute, KeyIgnore: []string{"X-Request-ID"}})
	for _, id := range []string{"a", "b"} {
		if _, d := f.Check(ctx, request("Cookie", "s=1", "X-Request-ID", id), netip.MustParseAddr("192.0.2.1")); d != nil {
			t.Fatal(d.Status)
		}
	}
	mu.Lock()
	if asked.Load() != 1 || len(ids) != 1 || ids[0] != "a" {
		t.Errorf("asked %d times, request IDs seen %q: want one question carrying the first ID", asked.Load(), ids)
	}
	mu.Unlock()
	if _, d := f.Check(ctx, request("Cookie", "s=2", "X-Request-ID", "c"), netip.MustParseAddr("192.0.2.1")); d != nil || asked.Load() != 2 {
		t.Errorf("other credentials were answered from the cache (asked %d)", asked.Load())
	}
}

// A wildcard origin pattern stands for host labels, never an empty one.
func TestCORSWildcardRefusesEmptyLabels(t *testing.T) {
	c := NewCORS(CORSConfig{AllowOrigins: []string{"https://*.example.com"}, AllowCredentials: true})
	for o, want := range map[string]bool{"https://a.example.com": true, "https://a.b.example.com": true,
		"https://..example.com": false, "https://a..example.com": false, "https://.a.example.com": false} {
		if c.Allowed(o) != want {
			t.Errorf("Allowed(%q) = %v, want %v", o, !want, want)
		}
	}
}
