package router

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The underscore spelling of user_header never reaches the upstream next to the verified one
// (a CGI-style origin reads both as HTTP_X_USER).
func TestBasicAuthStripsUnderscoreUserHeader(t *testing.T) {
	in, tr := newAccessInstance(t)
	h := in.Handler("main")
	ex := newExchange("GET", "x", "/private/a")
	ex.req.Header.Add("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:pw")))
	ex.req.Header.Add("X_User", "root")
	ex.req.Header.Add("x_user", "root")
	h.ServeExchange(ex)
	_, up := tr.last()
	if ex.resp.Status != 200 || up.Get("X-User") != "alice" {
		t.Fatalf("status %d, upstream fields %v", ex.resp.Status, up.Fields())
	}
	if up.Has("X_User") || up.Has("x_user") {
		t.Errorf("forged X_User reached the upstream next to X-User: %v", up.Fields())
	}
}

const rewriteNormalizedConfig = `
listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
upstreams: [{name: app, servers: [{address: "127.0.0.1:1"}]}]
routes:
  - name: pub
    match: {path_prefix: /pub/}
    upstream: app
    rewrite: {strip_prefix: /pub, add_prefix: /public}
  - name: admin
    match: {path_prefix: /admin/}
    respond: {status: 403, body: no}
  - name: rest
    match: {path_prefix: /}
    upstream: app
    rewrite: {add_prefix: /tenants/t1}
    request_headers:
      rules: [{when: {path_prefix: /account/}, set: {X-Account: "1"}}]
    response_headers:
      rules: [{when: {path_prefix: /account/}, set: {Cache-Control: no-store}}]
`

// The rewrite and the conditional header rules see the path route matching saw: dot
// segments cannot climb out of add_prefix, and another spelling of a prefix does not miss a
// rule.
func TestRewriteAndRulesUseNormalizedPath(t *testing.T) {
	tr := &echoTransport{}
	in, err := NewInstance(mustConfig(t, rewriteNormalizedConfig), Deps{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(t.Context())
	h := in.Handler("main")
	for target, want := range map[string]string{
		"/pub/x":                 "/public/x",
		"/pub/../pub/x":          "/public/x",
		"/pub/%2e%2e/pub/secret": "/public/secret",
		"/pub/a?q=1":             "/public/a?q=1",
		"/x":                     "/tenants/t1/x",
		"/../t2/secret":          "/tenants/t1/t2/secret",
		"/%2e%2e/%2e%2e/admin2":  "/tenants/t1/admin2",
		"/a/..//b?x=%2e%2e":      "/tenants/t1/b?x=%2e%2e",
		"/a%2Fb":                 "/tenants/t1/a%2Fb",
	} {
		ex := newExchange("GET", "x", target)
		h.ServeExchange(ex)
		got, _ := tr.last()
		if ex.resp.Status != 200 || got != want {
			t.Errorf("%s -> %d, upstream target %q, want %q", target, ex.resp.Status, got, want)
		}
	}
	for _, target := range []string{"/account/x", "//account/x", "/%61ccount/x", "/y/../account/x"} {
		ex := newExchange("GET", "x", target)
		h.ServeExchange(ex)
		_, up := tr.last()
		if ex.resp.Status != 200 || ex.resp.Header.Get("Cache-Control") != "no-store" || up.Get("X-Account") != "1" {
			t.Errorf("%s -> %d, Cache-Control %q, upstream X-Account %q: the path_prefix rules missed",
				target, ex.resp.Status, ex.resp.Header.Get("Cache-Control"), up.Get("X-Account"))
		}
	}
}

// Through a real listener and origin: add_prefix confines a tenant whatever the target.
func TestAddPrefixConfinesDotSegments(t *testing.T) {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RequestURI)
	}))
	defer o.Close()
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: t1
    match: {path_prefix: /}
    upstream: app
    rewrite: {add_prefix: /tenants/t1}
upstreams:
  - name: app
    servers: [{address: %s}]
`, strings.TrimPrefix(o.URL, "http://"))
	rt := startCached(t, y)
	for target, want := range map[string]string{"/x": "/tenants/t1/x", "/../t2/secret": "/tenants/t1/t2/secret",
		"/%2e%2e/%2e%2e/admin": "/tenants/t1/admin"} {
		c, err := net.Dial("tcp", rt.Addr("main").String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: t1.example.com\r\nConnection: close\r\n\r\n", target)
		b, _ := io.ReadAll(c)
		c.Close()
		lines := strings.Split(string(b), "\r\n")
		if !strings.HasPrefix(lines[0], "HTTP/1.1 200") || lines[len(lines)-1] != want {
			t.Errorf("%s -> %s, origin saw %q, want %q", target, lines[0], lines[len(lines)-1], want)
		}
	}
}

// A cached route behind JWT from a cookie stores no response that does not say a shared
// cache may keep it: one user's page never goes to another.
func TestCacheWithAuthKeepsUsersApart(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jk := jose.JSONWebKey{Key: priv, KeyID: "k", Algorithm: "ES256", Use: "sig"}
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jk.Public()}})
	}))
	defer keys.Close()
	var n atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if strings.HasPrefix(r.URL.Path, "/public") {
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		w.Header().Set("Last-Modified", time.Now().Add(-24*time.Hour).UTC().Format(http.TimeFormat))
		io.WriteString(w, "page of "+r.Header.Get("X-User"))
	}))
	defer o.Close()
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: app
    upstream: app
    cache: {ttl: {"200": 1m}}
    auth: {jwt: {jwks_url: %q, cookie: session, claims_to_headers: {sub: X-User}}}
upstreams:
  - name: app
    servers: [{address: %s}]
`, keys.URL, strings.TrimPrefix(o.URL, "http://"))
	rt := startCached(t, y)
	base := "http://" + rt.Addr("main").String()
	sg, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jk}, nil)
	get := func(path, sub string) string {
		tok, _ := jwt.Signed(sg).Claims(jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}).Serialize()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Cookie", "session="+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s as %s: %d %s", path, sub, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := get("/me", "alice"); got != "page of alice" {
		t.Fatalf("alice got %q", got)
	}
	if got := get("/me", "bob"); got != "page of bob" {
		t.Errorf("bob got %q: a response stored for another user", got)
	}
	// A response that says it may be shared is still cached.
	get("/public/a", "alice")
	before := n.Load()
	if got := get("/public/a", "bob"); got != "page of alice" || n.Load() != before {
		t.Errorf("a public response was not served from the cache: %q, origin asked %d more", got, n.Load()-before)
	}
}

// The forward-auth service is told the normalized path (the one the route matched) and the
// resolved client address, never the client's own forwarding fields.
func TestForwardAuthGetsNormalizedPath(t *testing.T) {
	seen := make(chan http.Header, 1)
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
		w.WriteHeader(204)
	}))
	defer svc.Close()
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
upstreams: [{name: app, servers: [{address: "127.0.0.1:1"}]}]
routes:
  - name: app
    match: {path_prefix: /app/}
    upstream: app
    auth: {forward: {url: %q}}
`, svc.URL)
	tr := &echoTransport{}
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(t.Context())
	ex := newExchange("GET", "x", "/app/public/../%61dmin?q=1")
	ex.req.Header.Add("X-Real-IP", "10.0.0.5")
	ex.req.Header.Add("X_Forwarded_For", "10.0.0.5")
	in.Handler("main").ServeExchange(ex)
	if ex.resp.Status != 200 {
		t.Fatalf("status %d", ex.resp.Status)
	}
	var h http.Header
	select {
	case h = <-seen:
	default:
		t.Fatal("the service was not asked")
	}
	if got := h.Get("X-Forwarded-Uri"); got != "/app/admin?q=1" {
		t.Errorf("X-Forwarded-Uri %q, want /app/admin?q=1", got)
	}
	if h.Get("X-Real-Ip") != "192.0.2.7" || h.Get("X-Forwarded-For") != "192.0.2.7" || h.Get("X_forwarded_for") != "" {
		t.Errorf("the service saw the client's forwarding fields: %v", h)
	}
}
