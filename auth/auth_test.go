package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/bcrypt"

	"github.com/verge-edge/verge/message"
)

var ctx = context.Background()

func request(fields ...string) *message.Request {
	r := &message.Request{Method: "GET", Target: "/p?q=1", Authority: "example.com", Proto: message.HTTP11, Scheme: "http"}
	for i := 0; i+1 < len(fields); i += 2 {
		r.Header.Add(fields[i], fields[i+1])
	}
	return r
}

func basicField(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestBasic(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	b := NewBasic(BasicConfig{Realm: "api", Users: map[string]string{"alice": string(hash)}, UserHeader: "X-User"})
	for _, tc := range []struct {
		name, auth string
		ok         bool
	}{
		{"none", "", false},
		{"right", basicField("alice", "s3cret"), true},
		{"right again (cached)", basicField("alice", "s3cret"), true},
		{"wrong password", basicField("alice", "nope"), false},
		{"unknown user", basicField("mallory", "s3cret"), false},
		{"not base64", "Basic %%%", false},
		{"bearer", "Bearer abc", false},
		{"too long", "Basic " + strings.Repeat("A", 2000), false},
	} {
		r := request("Authorization", tc.auth, "X-User", "forged")
		user, d := b.Check(ctx, r, netip.Addr{})
		if tc.ok {
			if d != nil || user != "alice" || r.Header.Get("X-User") != "alice" {
				t.Errorf("%s: got user %q, denial %v, X-User %q; want alice passed", tc.name, user, d, r.Header.Get("X-User"))
			}
			continue
		}
		if d == nil || d.Status != 401 || d.Header.Get("WWW-Authenticate") != `Basic realm="api", charset="UTF-8"` {
			t.Errorf("%s: got %+v, want 401 with a Basic challenge", tc.name, d)
		}
		if r.Header.Has("X-User") {
			t.Errorf("%s: the client's X-User was not removed", tc.name)
		}
	}
	if n := len(b.cache); n != 1 {
		t.Errorf("cache holds %d entries, want 1 (only verified pairs)", n)
	}
}

// TestBasicCacheBounded: many verified pairs keep the cache at its bound, and a changed hash
// (a reload with a new password) is not answered from the cache.
func TestBasicCacheBounded(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	b := NewBasic(BasicConfig{Realm: "r", Users: map[string]string{"u": string(hash)}})
	for i := range BasicCacheSize + 10 {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		b.cache[k] = basicEntry{hash: "x", expires: time.Now().Add(time.Hour)}
	}
	if !b.verify(ctx, []byte("u"), []byte("pw")) || len(b.cache) > BasicCacheSize+10 {
		t.Fatalf("verify failed or cache grew to %d", len(b.cache))
	}
	hash2, _ := bcrypt.GenerateFromPassword([]byte("new"), bcrypt.MinCost)
	b.users["u"] = hash2
	if b.verify(ctx, []byte("u"), []byte("pw")) {
		t.Error("the old password passed from the cache after the hash changed")
	}
}

// jwks is a key server for tests: it serves the public halves of its keys.
type jwks struct {
	mu      sync.Mutex
	keys    []jose.JSONWebKey // private
	fetches atomic.Int64
	srv     *httptest.Server
}

func newJWKS(t *testing.T) *jwks {
	k := &jwks{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.fetches.Add(1)
		k.mu.Lock()
		var set jose.JSONWebKeySet
		for _, key := range k.keys {
			set.Keys = append(set.Keys, key.Public())
		}
		k.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *jwks) addRSA(kid string) jose.JSONWebKey {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	jk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: "RS256", Use: "sig"}
	k.mu.Lock()
	k.keys = append(k.keys, jk)
	k.mu.Unlock()
	return jk
}

func (k *jwks) addEC(kid string) jose.JSONWebKey {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: "ES256", Use: "sig"}
	k.mu.Lock()
	k.keys = append(k.keys, jk)
	k.mu.Unlock()
	return jk
}

func sign(t *testing.T, key jose.JSONWebKey, alg jose.SignatureAlgorithm, claims any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(sg).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testClaims struct {
	jwt.Claims
	Email string   `json:"email,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

func claims(aud string, exp time.Duration) testClaims {
	now := time.Now()
	return testClaims{Claims: jwt.Claims{Issuer: "https://issuer.test", Subject: "user-1", Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(now.Add(exp)), IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute))},
		Email: "u@example.com", Roles: []string{"a", "b"}}
}

func newTestJWT(k *jwks) *JWT {
	return NewJWT(JWTConfig{JWKSURL: k.srv.URL, Issuer: "https://issuer.test", Audience: []string{"api"},
		Algorithms: []string{"RS256", "ES256"}, Leeway: 5 * time.Second, Cookie: "session",
		ClaimsToHeaders: map[string]string{"sub": "X-User", "email": "X-Email", "roles": "X-Roles"},
		CacheMin:        time.Minute, CacheMax: time.Hour, RefetchInterval: time.Hour, FetchTimeout: 5 * time.Second})
}

func TestJWT(t *testing.T) {
	k := newJWKS(t)
	rsaKey := k.addRSA("r1")
	ecKey := k.addEC("e1")
	j := newTestJWT(k)
	hs := jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "r1"}
	for _, tc := range []struct {
		name   string
		fields []string
		status int // 0: passes
	}{
		{"no token", nil, 401},
		{"valid RS256", []string{"Authorization", "Bearer " + sign(t, rsaKey, jose.RS256, claims("api", time.Hour))}, 0},
		{"valid ES256", []string{"Authorization", "Bearer " + sign(t, ecKey, jose.ES256, claims("api", time.Hour))}, 0},
		{"in the cookie", []string{"Cookie", "a=b; session=" + sign(t, rsaKey, jose.RS256, claims("api", time.Hour))}, 0},
		{"expired", []string{"Authorization", "Bearer " + sign(t, rsaKey, jose.RS256, claims("api", -time.Minute))}, 401},
		{"expired within leeway", []string{"Authorization", "Bearer " + sign(t, rsaKey, jose.RS256, claims("api", -2*time.Second))}, 0},
		{"wrong audience", []string{"Authorization", "Bearer " + sign(t, rsaKey, jose.RS256, claims("other", time.Hour))}, 401},
		{"HS256 with the kid of an RSA key", []string{"Authorization", "Bearer " + sign(t, hs, jose.HS256, claims("api", time.Hour))}, 401},
		{"alg none", []string{"Authorization", "Bearer " + noneToken(claims("api", time.Hour))}, 401},
		{"RS384 not allowed", []string{"Authorization", "Bearer " + sign(t, rsaKey, jose.RS384, claims("api", time.Hour))}, 401},
		{"garbage", []string{"Authorization", "Bearer a.b.c"}, 401},
	} {
		r := request(append(tc.fields, "X-User", "admin", "X-Email", "forged")...)
		user, d := j.Check(ctx, r, netip.Addr{})
		if tc.status == 0 {
			if d != nil {
				t.Errorf("%s: refused %d %s", tc.name, d.Status, d.Body)
				continue
			}
			if user != "user-1" || r.Header.Get("X-User") != "user-1" || r.Header.Get("X-Email") != "u@example.com" ||
				r.Header.Get("X-Roles") != "a, b" || r.Header.Count("X-User") != 1 {
				t.Errorf("%s: user %q, fields %v", tc.name, user, r.Header.Fields())
			}
			continue
		}
		if d == nil || d.Status != tc.status || !strings.HasPrefix(d.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: got %+v, want %d with a Bearer challenge", tc.name, d, tc.status)
		}
		if r.Header.Has("X-User") || r.Header.Has("X-Email") {
			t.Errorf("%s: forged claim fields reached upstream: %v", tc.name, r.Header.Fields())
		}
	}
	if n := k.fetches.Load(); n != 1 {
		t.Errorf("%d key set fetches, want 1 (cached for max-age)", n)
	}
}

// noneToken builds an unsigned token with alg "none".
func noneToken(c any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// TestJWTKeyRotation: a token signed by a new key is accepted after one refetch, and a flood
// of tokens with unknown kids causes no more fetches within the refetch interval.
func TestJWTKeyRotation(t *testing.T) {
	k := newJWKS(t)
	old := k.addRSA("old")
	j := newTestJWT(k)
	j.cfg.RefetchInterval = time.Hour
	if _, err := j.Verify(ctx, sign(t, old, jose.RS256, claims("api", time.Hour))); err != nil {
		t.Fatal(err)
	}
	// Pretend the first fetch was long ago, as after a rotation.
	j.keys.mu.Lock()
	j.keys.lastFetch = time.Now().Add(-2 * time.Hour)
	j.keys.mu.Unlock()
	rotated := k.addRSA("new")
	if _, err := j.Verify(ctx, sign(t, rotated, jose.RS256, claims("api", time.Hour))); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := k.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after a rotation, want 2", n)
	}
	attacker := jose.JSONWebKey{Key: old.Key, KeyID: "", Algorithm: "RS256"}
	for i := range 200 {
		attacker.KeyID = "kid-" + string(rune('a'+i%26)) + strings.Repeat("x", i)
		if _, err := j.Verify(ctx, sign(t, attacker, jose.RS256, claims("api", time.Hour))); err == nil {
			t.Fatal("a token with an unknown kid passed")
		}
	}
	if n := k.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after 200 unknown kids, want still 2 (rate-limited)", n)
	}
}

func TestJWTKeysUnavailable(t *testing.T) {
	j := NewJWT(JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks", Algorithms: []string{"RS256"}, Leeway: time.Second,
		CacheMin: time.Minute, CacheMax: time.Hour, RefetchInterval: time.Hour, FetchTimeout: 2 * time.Second})
	k := newJWKS(t)
	tok := sign(t, k.addRSA("a"), jose.RS256, claims("api", time.Hour))
	_, d := j.Check(ctx, request("Authorization", "Bearer "+tok), netip.Addr{})
	if d == nil || d.Status != 503 {
		t.Fatalf("got %+v, want 503", d)
	}
}

func TestClampMaxAge(t *testing.T) {
	for _, tc := range []struct {
		cc   string
		want time.Duration
	}{
		{"", time.Minute}, {"max-age=10", time.Minute}, {"public, max-age=600", 10 * time.Minute},
		{"max-age=999999999999", time.Hour}, {"no-cache", time.Minute},
	} {
		if got := clampMaxAge(tc.cc, time.Minute, time.Hour); got != tc.want {
			t.Errorf("clampMaxAge(%q) = %v, want %v", tc.cc, got, tc.want)
		}
	}
}

func TestForward(t *testing.T) {
	var asked atomic.Int64
	var seen http.Header
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			w.Header().Set("X-Auth-User", "bob")
			w.WriteHeader(204)
		case "Bearer slow":
			<-r.Context().Done()
		case "Bearer odd":
			w.WriteHeader(302)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="sso"`)
			w.WriteHeader(401)
			w.Write([]byte("log in first"))
		}
	}))
	defer srv.Close()
	f := NewForward(ForwardConfig{URL: srv.URL, Timeout: 500 * time.Millisecond, CopyHeaders: []string{"X-Auth-User"}, Cache: time.Minute})
	client := netip.MustParseAddr("192.0.2.7")

	r := request("Authorization", "Bearer good", "X-Auth-User", "root")
	if _, d := f.Check(ctx, r, client); d != nil || r.Header.Get("X-Auth-User") != "bob" || r.Header.Count("X-Auth-User") != 1 {
		t.Fatalf("good: %+v %v", d, r.Header.Fields())
	}
	mu.Lock()
	if seen.Get("X-Original-URI") != "/p?q=1" || seen.Get("X-Forwarded-Method") != "GET" || seen.Get("X-Forwarded-Host") != "example.com" || seen.Get("X-Forwarded-For") != "192.0.2.7" {
		t.Errorf("the service saw %v", seen)
	}
	mu.Unlock()
	r = request("Authorization", "Bearer good")
	if _, d := f.Check(ctx, r, client); d != nil || r.Header.Get("X-Auth-User") != "bob" || asked.Load() != 1 {
		t.Errorf("cached: %+v, asked %d times", d, asked.Load())
	}
	_, d := f.Check(ctx, request("Authorization", "Bearer bad"), client)
	if d == nil || d.Status != 401 || string(d.Body) != "log in first" || d.Header.Get("WWW-Authenticate") != `Bearer realm="sso"` {
		t.Errorf("bad: %+v", d)
	}
	if _, d := f.Check(ctx, request("Authorization", "Bearer odd"), client); d == nil || d.Status != 500 {
		t.Errorf("302 from the service: %+v, want 500", d)
	}
	if _, d := f.Check(ctx, request("Authorization", "Bearer slow"), client); d == nil || d.Status != 503 {
		t.Errorf("slow service: %+v, want 503", d)
	}
}

func TestCORS(t *testing.T) {
	c := NewCORS(CORSConfig{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"},
		AllowMethods: []string{"GET", "PUT"}, AllowHeaders: []string{"Content-Type"}, ExposeHeaders: []string{"X-Request-ID"},
		AllowCredentials: true, MaxAge: 10 * time.Minute})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true}, {"https://a.example.org", true}, {"https://a.b.example.org", true},
		{"https://example.org", false}, {"http://a.example.org", false}, {"https://evil.com", false},
		{"https://a.example.org.evil.com", false}, {"https://a.example.org:8443", false}, {"null", false}, {"", false},
		{"https://x@a.example.org", false}, {"https://app.example.com.evil.com", false},
	} {
		if got := c.Allowed(tc.origin); got != tc.ok {
			t.Errorf("Allowed(%q) = %v, want %v", tc.origin, got, tc.ok)
		}
	}
	var h message.Header
	pre := request("Origin", "https://app.example.com", "Access-Control-Request-Method", "PUT")
	pre.Method = "OPTIONS"
	if !IsPreflight(pre) {
		t.Fatal("not a preflight")
	}
	if st := c.Preflight(pre, &h); st != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Methods") != "GET, PUT" ||
		h.Get("Access-Control-Max-Age") != "600" || !h.HasToken("Vary", "Origin") {
		t.Errorf("preflight: %d %v", st, h.Fields())
	}
	h.Reset()
	pre.Header.Set("Origin", "https://evil.com")
	if st := c.Preflight(pre, &h); st != 403 || h.Has("Access-Control-Allow-Origin") {
		t.Errorf("evil preflight: %d %v", st, h.Fields())
	}
	h.Reset()
	h.Add("Access-Control-Allow-Origin", "*") // the upstream's own
	c.Mark("https://evil.com", &h)
	if h.Has("Access-Control-Allow-Origin") || !h.HasToken("Vary", "Origin") {
		t.Errorf("evil response: %v", h.Fields())
	}
	h.Reset()
	c.Mark("https://a.example.org", &h)
	if h.Get("Access-Control-Allow-Origin") != "https://a.example.org" || h.Get("Access-Control-Expose-Headers") != "X-Request-ID" {
		t.Errorf("allowed response: %v", h.Fields())
	}
	star := NewCORS(CORSConfig{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET"}})
	h.Reset()
	star.Mark("https://anything.test", &h)
	if h.Get("Access-Control-Allow-Origin") != "*" || h.Has("Access-Control-Allow-Credentials") {
		t.Errorf("star: %v", h.Fields())
	}
}

func BenchmarkBasicCached(b *testing.B) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	bs := NewBasic(BasicConfig{Realm: "r", Users: map[string]string{"u": string(hash)}})
	r := request("Authorization", basicField("u", "pw"))
	bs.Check(ctx, r, netip.Addr{})
	b.ReportAllocs()
	for b.Loop() {
		if _, d := bs.Check(ctx, r, netip.Addr{}); d != nil {
			b.Fatal("refused")
		}
	}
}

func BenchmarkJWTVerify(b *testing.B) {
	k := &jwks{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var set jose.JSONWebKeySet
		for _, key := range k.keys {
			set.Keys = append(set.Keys, key.Public())
		}
		json.NewEncoder(w).Encode(set)
	}))
	defer k.srv.Close()
	key := k.addEC("e")
	j := newTestJWT(k)
	t := &testing.T{}
	tok := "Bearer " + sign(t, key, jose.ES256, claims("api", time.Hour))
	r := request("Authorization", tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, d := j.Check(ctx, r, netip.Addr{}); d != nil {
			b.Fatal("refused")
		}
	}
}

// TestBasicBcryptBounded: with every bcrypt slot taken, a further comparison waits instead of
// running, and gives up when its request ends: a flood of wrong passwords queues rather than
// taking every CPU.
func TestBasicBcryptBounded(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	b := NewBasic(BasicConfig{Realm: "r", Users: map[string]string{"u": string(hash)}})
	for range cap(bcryptSlots) {
		bcryptSlots <- struct{}{}
	}
	c, cancel := context.WithCancel(ctx)
	done := make(chan bool)
	go func() { done <- b.verify(c, []byte("u"), []byte("pw")) }()
	select {
	case <-done:
		t.Fatal("a comparison ran with every slot taken")
	default:
	}
	cancel()
	if <-done {
		t.Error("a canceled comparison passed")
	}
	for range cap(bcryptSlots) {
		<-bcryptSlots
	}
	if !b.verify(ctx, []byte("u"), []byte("pw")) {
		t.Error("the right password failed once slots were free")
	}
}

// TestJWTStripsUnclaimedFields: a claim field is removed even when the token lacks the claim.
func TestJWTStripsUnclaimedFields(t *testing.T) {
	k := newJWKS(t)
	key := k.addRSA("r")
	j := newTestJWT(k)
	c := claims("api", time.Hour)
	c.Email = ""
	r := request("Authorization", "Bearer "+sign(t, key, jose.RS256, c), "X-Email", "ceo@example.com")
	if _, d := j.Check(ctx, r, netip.Addr{}); d != nil || r.Header.Has("X-Email") {
		t.Errorf("denial %v, fields %v", d, r.Header.Fields())
	}
}

// FuzzParseBasic: any Authorization value parses or not without panicking, and a parsed
// user has no colon.
func FuzzParseBasic(f *testing.F) {
	f.Add(basicField("alice", "pw"))
	f.Add("Basic ")
	f.Add("basic Og==")
	f.Fuzz(func(t *testing.T, v string) {
		var buf [maxBasicHeader]byte
		user, _, ok := parseBasic(v, &buf)
		if ok && (len(user) == 0 || bytes.IndexByte(user, ':') >= 0) {
			t.Fatalf("%q: user %q", v, user)
		}
	})
}
