package router

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/upstream"
)

// echoTransport answers every round trip 200 (or the X-Status it was asked for through the
// request's X-Want-Status) and remembers the last upstream request.
type echoTransport struct {
	mu     sync.Mutex
	target string
	header message.Header
}

func (e *echoTransport) RoundTrip(_ context.Context, _ *upstream.Peer, req *message.Request) (*message.Response, error) {
	e.mu.Lock()
	e.target = req.Target
	e.header = req.Header.Clone()
	e.mu.Unlock()
	resp := &message.Response{Status: 200, Proto: message.HTTP11, ContentLength: 2, Body: io.NopCloser(strings.NewReader("ok"))}
	if req.Header.Get("X-Want-Status") == "503" {
		resp.Status = 503
	}
	resp.Header.Add("Content-Type", "text/plain")
	return resp, nil
}

func (e *echoTransport) last() (string, message.Header) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.target, e.header.Clone()
}

func TestRewrite(t *testing.T) {
	for _, tc := range []struct {
		rw       rewrite
		in, want string
	}{
		{rewrite{strip: "/api"}, "/api/users?x=1", "/users?x=1"},
		{rewrite{strip: "/api"}, "/api", "/"},
		{rewrite{strip: "/api"}, "/apix", "/apix"},
		{rewrite{add: "/v2"}, "/users", "/v2/users"},
		{rewrite{re: regexp.MustCompile(`^/old/(.*)$`), to: "/new/$1"}, "/old/a/b?q", "/new/a/b?q"},
		{rewrite{re: regexp.MustCompile(`^/old/(.*)$`), to: "/new/$1"}, "/other", "/other"},
		{rewrite{re: regexp.MustCompile(`^/u/(?P<id>\d+)$`), to: "user-${id}"}, "/u/42", "/user-42"},
		{rewrite{strip: "/api", re: regexp.MustCompile(`^/v1/(.*)$`), to: "/v2/$1", add: "/svc"}, "/api/v1/x", "/svc/v2/x"},
	} {
		if got := tc.rw.apply(tc.in); got != tc.want {
			t.Errorf("%+v.apply(%q) = %q, want %q", tc.rw, tc.in, got, tc.want)
		}
	}
}

func TestStatusSet(t *testing.T) {
	s := parseStatusSet("404, 500-502,2xx")
	for code, want := range map[int]bool{200: true, 299: true, 300: false, 404: true, 405: false, 500: true, 502: true, 503: false} {
		if s.has(code) != want {
			t.Errorf("has(%d) = %v, want %v", code, !want, want)
		}
	}
}

func TestNewUUID(t *testing.T) {
	var a, b [36]byte
	newUUID(&a)
	newUUID(&b)
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !re.Match(a[:]) || a == b {
		t.Errorf("uuids %s %s", a[:], b[:])
	}
}

const accessConfig = `
listeners: [{name: main, address: "127.0.0.1:0", trusted_proxies: [10.0.0.0/8]}]
access_log: {output: "off"}
admin: {disabled: true}
request_id: {enabled: true}
upstreams: [{name: app, servers: [{address: "127.0.0.1:1"}]}]
routes:
  - name: private
    match: {path_prefix: /private}
    upstream: app
    auth: {basic: {realm: inside, users: {alice: "HASH"}, user_header: X-User}}
  - name: api
    match: {path_prefix: /api}
    upstream: app
    cors: {allow_origins: ["https://app.example.com"], allow_methods: [GET, PUT], allow_credentials: true}
    rewrite: {strip_prefix: /api, regex: '^/old/(.*)$', to: '/new/$1'}
    request_headers:
      rules: [{when: {path_prefix: /api/old}, set: {X-Legacy: "1"}}]
    response_headers:
      rules: [{when: {status: 5xx}, set: {Cache-Control: no-store}}]
  - name: hello
    match: {path: /hello}
    respond: {body: hi}
`

func newAccessInstance(t testing.TB) (*Instance, *echoTransport) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	tr := &echoTransport{}
	in, err := NewInstance(mustConfig(t, strings.Replace(accessConfig, "HASH", string(hash), 1)), Deps{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(context.Background()) })
	return in, tr
}

func TestAccessThroughPhases(t *testing.T) {
	in, tr := newAccessInstance(t)
	h := in.Handler("main")

	// Basic auth: 401 with a challenge, then 200 with the user upstream; the client's X-User
	// never reaches the upstream.
	ex := newExchange("GET", "x", "/private/a")
	ex.req.Header.Add("X-User", "root")
	h.ServeExchange(ex)
	if ex.resp.Status != 401 || ex.resp.Header.Get("WWW-Authenticate") != `Basic realm="inside", charset="UTF-8"` || ex.resp.Header.Get("X-Request-ID") == "" {
		t.Errorf("no credentials: %d %v", ex.resp.Status, ex.resp.Header.Fields())
	}
	ex = newExchange("GET", "x", "/private/a")
	ex.req.Header.Add("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:pw")))
	ex.req.Header.Add("X-User", "root")
	h.ServeExchange(ex)
	_, up := tr.last()
	if ex.resp.Status != 200 || up.Get("X-User") != "alice" || up.Count("X-User") != 1 {
		t.Errorf("credentials: %d, upstream fields %v", ex.resp.Status, up.Fields())
	}
	id := ex.resp.Header.Get("X-Request-ID")
	if len(id) != 36 || up.Get("X-Request-ID") != id {
		t.Errorf("request id %q on the response, %q upstream", id, up.Get("X-Request-ID"))
	}

	// An untrusted client's request ID is replaced; a trusted proxy's is kept.
	ex = newExchange("GET", "x", "/hello")
	ex.req.Header.Add("X-Request-ID", "client-chosen")
	h.ServeExchange(ex)
	if got := ex.resp.Header.Get("X-Request-ID"); got == "client-chosen" || len(got) != 36 {
		t.Errorf("untrusted client's id: response has %q", got)
	}
	ex = newExchange("GET", "x", "/hello")
	ex.conn.RemoteAddr = netip.MustParseAddrPort("10.0.0.1:4000") // a trusted proxy
	ex.req.Header.Add("X-Request-ID", "edge-7")
	h.ServeExchange(ex)
	if got := ex.resp.Header.Get("X-Request-ID"); got != "edge-7" {
		t.Errorf("trusted proxy's id: response has %q, want edge-7", got)
	}

	// CORS: a preflight is answered 204 without reaching the upstream; the actual request
	// is rewritten, gets a conditional request field and the CORS fields.
	tr.mu.Lock()
	tr.target = ""
	tr.mu.Unlock()
	ex = newExchange("OPTIONS", "x", "/api/old/thing")
	ex.req.Header.Add("Origin", "https://app.example.com")
	ex.req.Header.Add("Access-Control-Request-Method", "PUT")
	h.ServeExchange(ex)
	if target, _ := tr.last(); ex.resp.Status != 204 || target != "" ||
		ex.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || ex.resp.Header.Get("Access-Control-Allow-Methods") != "GET, PUT" {
		t.Errorf("preflight: %d %v (upstream saw %q)", ex.resp.Status, ex.resp.Header.Fields(), target)
	}
	ex = newExchange("GET", "x", "/api/old/thing?x=1")
	ex.req.Header.Add("Origin", "https://app.example.com")
	h.ServeExchange(ex)
	target, up := tr.last()
	if target != "/new/thing?x=1" || up.Get("X-Legacy") != "1" {
		t.Errorf("rewrite: upstream saw %q %v", target, up.Fields())
	}
	if ex.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || ex.resp.Header.Get("Access-Control-Allow-Credentials") != "true" ||
		!ex.resp.Header.HasToken("Vary", "Origin") || ex.resp.Header.Has("Cache-Control") {
		t.Errorf("actual request: %v", ex.resp.Header.Fields())
	}
	ex = newExchange("GET", "x", "/api/x")
	ex.req.Header.Add("Origin", "https://evil.example")
	ex.req.Header.Add("X-Want-Status", "503")
	h.ServeExchange(ex)
	if ex.resp.Header.Has("Access-Control-Allow-Origin") || ex.resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("another origin, a 503: %d %v", ex.resp.Status, ex.resp.Header.Fields())
	}
}

// BenchmarkUpstreamRequestPlain and BenchmarkUpstreamRequestRewrite measure the
// UpstreamRequest phase of a route without and with a rewrite and header rules.
func BenchmarkUpstreamRequestPlain(b *testing.B) { benchUpstreamRequest(b, "/hello") }

func BenchmarkUpstreamRequestRewrite(b *testing.B) { benchUpstreamRequest(b, "/api/old/thing?x=1") }

func benchUpstreamRequest(b *testing.B, target string) {
	in, _ := newAccessInstance(b)
	ph := in.handlers["main"].proxy.Phases.(*phases)
	r := ph.table.match(&message.Request{Method: "GET", Authority: "x", Target: target})
	c := &reqCtx{route: r}
	ex := newExchange("GET", "x", target)
	var req message.Request
	s := &proxy.Session{Req: &ex.req}
	b.ReportAllocs()
	for b.Loop() {
		req.Target = target
		req.Header.Reset()
		req.Header.Add("Accept", "*/*")
		ph.UpstreamRequest(s, &req, c)
	}
}

// failTransport fails every round trip with a refused connection.
type failTransport struct{}

func (failTransport) RoundTrip(context.Context, *upstream.Peer, *message.Request) (*message.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
}

// TestRequestIDOnRefusals: the 429 of a rate limit and the engine's 502 carry the ID too.
func TestRequestIDOnRefusals(t *testing.T) {
	y := `
listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
request_id: {enabled: true, header: X-Req}
rate_limits: [{name: one, limit: 1, period: 1m}]
upstreams: [{name: app, servers: [{address: "127.0.0.1:1"}]}]
routes:
  - {name: limited, match: {path: /limited}, rate_limits: [one], respond: {body: ok}}
  - {name: down, retries: 0, upstream: app}
`
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: failTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(context.Background()) })
	h := in.Handler("main")
	for i, want := range []int{200, 429} {
		ex := newExchange("GET", "x", "/limited")
		h.ServeExchange(ex)
		if ex.resp.Status != want || len(ex.resp.Header.Get("X-Req")) != 36 {
			t.Errorf("request %d: %d %v, want %d with X-Req", i, ex.resp.Status, ex.resp.Header.Fields(), want)
		}
	}
	ex := newExchange("GET", "x", "/down")
	h.ServeExchange(ex)
	if ex.resp.Status != 502 || len(ex.resp.Header.Get("X-Req")) != 36 || !strings.HasPrefix(ex.body.String(), "502 Bad Gateway") {
		t.Errorf("upstream down: %d %v %q", ex.resp.Status, ex.resp.Header.Fields(), ex.body.String())
	}
}
