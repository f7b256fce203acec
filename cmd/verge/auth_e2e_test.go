package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/bcrypt"
)

// echoOrigin answers every request with its target and fields as JSON.
func echoOrigin(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"target": r.RequestURI, "header": r.Header})
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

type echoed struct {
	Target string      `json:"target"`
	Header http.Header `json:"header"`
}

// testKeys is a JWKS server whose key set can grow (a rotation).
type testKeys struct {
	mu   sync.Mutex
	keys []jose.JSONWebKey
	srv  *httptest.Server
}

func newTestKeys(t *testing.T) *testKeys {
	k := &testKeys{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		var set jose.JSONWebKeySet
		for _, key := range k.keys {
			set.Keys = append(set.Keys, key.Public())
		}
		k.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=3600")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *testKeys) add(t *testing.T, kid string) jose.JSONWebKey {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: "RS256", Use: "sig"}
	k.mu.Lock()
	k.keys = append(k.keys, jk)
	k.mu.Unlock()
	return jk
}

func signToken(t *testing.T, key jose.JSONWebKey, alg jose.SignatureAlgorithm, aud string, exp time.Duration) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	c := jwt.Claims{Issuer: "https://issuer.test", Subject: "user-42", Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(time.Now().Add(exp))}
	s, err := jwt.Signed(sg).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunAuthAndRewrites drives basic auth, JWT, forward auth, CORS, a regex rewrite,
// request IDs and the combined access log through `verge run`.
func TestRunAuthAndRewrites(t *testing.T) {
	origin := echoOrigin(t)
	keys := newTestKeys(t)
	k1 := keys.add(t, "k1")
	authSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Original-URI") == "" || r.Header.Get("X-Forwarded-Method") == "" {
			w.WriteHeader(500)
			return
		}
		if r.Header.Get("Authorization") == "Bearer let-me-in" {
			w.Header().Set("X-Auth-User", "bob")
			w.WriteHeader(200)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="sso"`)
		w.WriteHeader(401)
		io.WriteString(w, "ask the SSO\n")
	}))
	t.Cleanup(authSrv.Close)
	hash, _ := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	var logPath string
	p := launchVerge(t, func(p *proc) {
		logPath = filepath.Join(p.dir, "access.log")
		os.WriteFile(filepath.Join(p.dir, "htpasswd"), []byte("alice:"+string(hash)+"\n"), 0o600)
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: %q, format: combined}
request_id: {enabled: true}
pid_file: %q
upstreams: [{name: app, servers: [{address: %q}]}]
routes:
  - name: basic
    match: {path_prefix: /basic}
    upstream: app
    auth: {basic: {realm: staff, users_file: htpasswd}}
  - name: jwt
    match: {path_prefix: /jwt}
    upstream: app
    auth:
      jwt:
        jwks_url: %q
        issuer: https://issuer.test
        audience: [api]
        algorithms: [RS256]
        refetch_interval: 1s
        claims_to_headers: {sub: X-User}
  - name: forward
    match: {path_prefix: /forward}
    upstream: app
    auth: {forward: {url: %q, copy_headers: [X-Auth-User]}}
  - name: api
    match: {path_prefix: /api}
    upstream: app
    cors: {allow_origins: ["https://*.example.com"], allow_methods: [GET, PUT], allow_headers: [Content-Type], allow_credentials: true, max_age: 1h}
    rewrite: {regex: '^/api/old/(.*)$', to: '/new/$1'}
`, p.addr, logPath, p.pidFile, origin, keys.srv.URL, authSrv.URL)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path string, fields ...string) (*http.Response, echoed) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.addr+path, nil)
		for i := 0; i+1 < len(fields); i += 2 {
			req.Header.Set(fields[i], fields[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e echoed
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, body)
			}
		}
		return resp, e
	}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/basic")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	// Basic auth.
	if resp, _ := do("GET", "/basic/x"); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="staff", charset="UTF-8"` {
		t.Errorf("basic without credentials: %d %v", resp.StatusCode, resp.Header)
	}
	req, _ := http.NewRequest("GET", "http://"+p.addr+"/basic/x", nil)
	req.SetBasicAuth("alice", "wrong")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("basic with a wrong password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req.SetBasicAuth("alice", "open sesame")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("basic with the password: %v %v", resp, err)
	}
	var e echoed
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	reqID := resp.Header.Get("X-Request-ID")
	if len(reqID) != 36 || e.Header.Get("X-Request-Id") != reqID {
		t.Errorf("request id %q on the response, %q upstream", reqID, e.Header.Get("X-Request-Id"))
	}

	// JWT.
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok, "X-User", "admin"} }
	resp, e = do("GET", "/jwt/me", bearer(signToken(t, k1, jose.RS256, "api", time.Hour))...)
	if resp.StatusCode != 200 || e.Header.Get("X-User") != "user-42" || len(e.Header.Values("X-User")) != 1 {
		t.Errorf("valid token: %d, upstream X-User %v", resp.StatusCode, e.Header.Values("X-User"))
	}
	for name, tok := range map[string]string{
		"expired":        signToken(t, k1, jose.RS256, "api", -time.Hour),
		"wrong audience": signToken(t, k1, jose.RS256, "other", time.Hour),
		"wrong alg":      signToken(t, k1, jose.RS512, "api", time.Hour),
		"HS256 confusion": signToken(t, jose.JSONWebKey{Key: []byte("public-key-bytes-used-as-secret!"), KeyID: "k1"},
			jose.HS256, "api", time.Hour),
	} {
		if resp, _ := do("GET", "/jwt/me", bearer(tok)...); resp.StatusCode != 401 {
			t.Errorf("%s token: %d, want 401", name, resp.StatusCode)
		}
	}
	if resp, _ := do("GET", "/jwt/me", "X-User", "admin"); resp.StatusCode != 401 {
		t.Errorf("no token, a forged X-User: %d, want 401", resp.StatusCode)
	}
	// Key rotation: a token of a new key passes once the set is fetched again (at most once
	// a second for unknown kids).
	k2 := keys.add(t, "k2")
	rotated := signToken(t, k2, jose.RS256, "api", time.Hour)
	waitFor(t, "the rotated key to be fetched", 30*time.Second, func() bool {
		resp, _ := do("GET", "/jwt/me", bearer(rotated)...)
		return resp.StatusCode == 200
	})

	// Forward auth.
	if resp, _ := do("GET", "/forward/x", "Authorization", "Bearer nope"); resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="sso"` {
		t.Errorf("forward auth refusal: %d %v", resp.StatusCode, resp.Header)
	}
	resp, e = do("GET", "/forward/x", "Authorization", "Bearer let-me-in", "X-Auth-User", "root")
	if resp.StatusCode != 200 || e.Header.Get("X-Auth-User") != "bob" || len(e.Header.Values("X-Auth-User")) != 1 {
		t.Errorf("forward auth: %d, upstream X-Auth-User %v", resp.StatusCode, e.Header.Values("X-Auth-User"))
	}

	// CORS preflight, answered by Verge, then the actual request, rewritten.
	resp, e = do("OPTIONS", "/api/old/items", "Origin", "https://app.example.com", "Access-Control-Request-Method", "PUT")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET, PUT" || resp.Header.Get("Access-Control-Max-Age") != "3600" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := do("OPTIONS", "/api/old/items", "Origin", "https://evil.test", "Access-Control-Request-Method", "PUT"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of another origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp, e = do("GET", "/api/old/items?page=2", "Origin", "https://app.example.com")
	if resp.StatusCode != 200 || e.Target != "/new/items?page=2" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Vary") == "" {
		t.Errorf("actual request: %d, upstream saw %q, fields %v", resp.StatusCode, e.Target, resp.Header)
	}

	// The combined access log has the basic-auth user and the request line.
	line := regexp.MustCompile(`^127\.0\.0\.1 - alice \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /basic/x HTTP/1\.1" 200 \d+ "-" "Go-http-client/1\.1"$`)
	waitFor(t, "the combined log line", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		for l := range bytes.SplitSeq(b, []byte("\n")) {
			if line.Match(l) {
				return true
			}
		}
		return false
	})
}

// TestRunRequestIDTemplateLog: the generated request ID is in the template access log.
func TestRunRequestIDTemplateLog(t *testing.T) {
	origin := echoOrigin(t)
	var logPath string
	p := launchVerge(t, func(p *proc) {
		logPath = filepath.Join(p.dir, "access.log")
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: %q, format: template, template: '{client} {method} {uri} {status} {duration_ms} id={request_id}'}
request_id: {enabled: true, header: X-Trace-ID}
pid_file: %q
upstreams: [{name: app, servers: [{address: %q}]}]
routes: [{name: all, upstream: app}]
`, p.addr, logPath, p.pidFile, origin)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second}
	var resp *http.Response
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		var err error
		resp, err = c.Get("http://" + p.addr + "/x?y=1")
		return err == nil
	})
	var e echoed
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	id := resp.Header.Get("X-Trace-ID")
	if len(id) != 36 || e.Header.Get("X-Trace-Id") != id {
		t.Fatalf("id %q on the response, %q upstream", id, e.Header.Get("X-Trace-Id"))
	}
	want := regexp.MustCompile(`^127\.0\.0\.1 GET /x\?y=1 200 \d+\.\d{3} id=` + id + `$`)
	waitFor(t, "the template log line", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return want.Match(bytes.TrimSpace(b))
	})
}

// TestValidateAuthExamples runs `verge validate` on the examples of this feature set.
func TestValidateAuthExamples(t *testing.T) {
	for _, f := range []string{"auth.yaml", "rewrites.yaml", "access-log.yaml"} {
		var out bytes.Buffer
		if code := run([]string{"validate", "-c", filepath.Join("..", "..", "examples", f)}, &out, &out); code != 0 {
			t.Errorf("verge validate %s: exit %d\n%s", f, code, out.String())
		}
	}
}
