package admin

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// attack sends one request the way a web page (or a DNS-rebound page) would.
type attack struct {
	name, method, path string
	host               string // "" keeps the server's address; "%p" is replaced by the port
	origin             string
	contentType        string
	fetchSite          string
	body               string
	want               int
}

func (a attack) send(t *testing.T, base string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if a.body != "" {
		body = strings.NewReader(a.body)
	}
	req, err := http.NewRequest(a.method, base+a.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if a.host != "" {
		_, port, _ := net.SplitHostPort(req.URL.Host)
		req.Host = strings.ReplaceAll(a.host, "%p", port)
	}
	if a.origin != "" {
		_, port, _ := net.SplitHostPort(req.URL.Host)
		req.Header.Set("Origin", strings.ReplaceAll(a.origin, "%p", port))
	}
	if a.contentType != "" {
		req.Header.Set("Content-Type", a.contentType)
	}
	if a.fetchSite != "" {
		req.Header.Set("Sec-Fetch-Site", a.fetchSite)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", a.method, a.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestCrossSiteRequestsCannotChangeState replays what a web page can send to a loopback admin
// API without a token: a "simple" POST (text/plain, form, multipart, no Content-Type) needing
// no preflight, with a foreign Origin, or with a foreign Host after DNS rebinding. Every one
// must be refused with a JSON error, and the configuration must stay as it was.
func TestCrossSiteRequestsCannotChangeState(t *testing.T) {
	const before = "listeners: [{address: 127.0.0.1:8080}]\n"
	fc := &fakeController{config: []byte(before), ready: true}
	dc := &deployController{deployed: map[string][]byte{"counter": []byte("old")}}
	base := startServer(t, &Server{Controller: &both{fc, dc}})
	const evil = "routes: []\n"
	for _, a := range []attack{
		{name: "text/plain form post from another site", method: "POST", path: "/config", host: "evil.example:%p",
			origin: "http://evil.example:%p", contentType: "text/plain", body: evil, want: 403},
		{name: "text/plain with a loopback Host", method: "POST", path: "/config",
			contentType: "text/plain", body: evil, want: 415},
		{name: "text/plain with charset", method: "POST", path: "/config",
			contentType: "text/plain; charset=utf-8", body: evil, want: 415},
		{name: "urlencoded form", method: "POST", path: "/config",
			contentType: "application/x-www-form-urlencoded", body: evil, want: 415},
		{name: "multipart form", method: "POST", path: "/config",
			contentType: "multipart/form-data; boundary=x", body: evil, want: 415},
		{name: "no content type", method: "POST", path: "/config", body: evil, want: 415},
		{name: "yaml from a foreign origin", method: "POST", path: "/config",
			origin: "http://evil.example", contentType: "application/yaml", body: evil, want: 403},
		{name: "yaml from a foreign origin on the admin port", method: "POST", path: "/config",
			origin: "http://evil.example:%p", contentType: "application/yaml", body: evil, want: 403},
		{name: "dns rebinding: foreign host, same-origin request", method: "POST", path: "/config",
			host: "rebind.evil.example:%p", contentType: "application/yaml", body: evil, want: 403},
		{name: "dns rebinding with origin", method: "POST", path: "/config", host: "rebind.evil.example:%p",
			origin: "http://rebind.evil.example:%p", contentType: "application/yaml", body: evil, want: 403},
		{name: "opaque origin", method: "POST", path: "/config",
			origin: "null", contentType: "application/yaml", body: evil, want: 403},
		{name: "https origin of loopback on another port", method: "POST", path: "/config",
			origin: "https://127.0.0.1", contentType: "application/yaml", body: evil, want: 403},
		{name: "sec-fetch-site cross-site", method: "POST", path: "/config",
			fetchSite: "cross-site", contentType: "application/yaml", body: evil, want: 403},
		{name: "loopback host on another port", method: "POST", path: "/config", host: "127.0.0.1:1",
			contentType: "application/yaml", body: evil, want: 403},
		{name: "localhost without the port", method: "POST", path: "/config", host: "localhost",
			contentType: "application/yaml", body: evil, want: 403},
		{name: "empty host", method: "POST", path: "/config", host: " ",
			contentType: "application/yaml", body: evil, want: 403},
		{name: "reload by form", method: "POST", path: "/reload",
			contentType: "application/x-www-form-urlencoded", want: 415},
		{name: "reload without content type (no-cors fetch)", method: "POST", path: "/reload", want: 415},
		{name: "reload from a foreign origin", method: "POST", path: "/reload",
			origin: "http://evil.example", contentType: "application/json", want: 403},
		{name: "drain by text/plain", method: "POST", path: "/upstreams/web/10.0.0.1:80/drain",
			contentType: "text/plain", want: 415},
		{name: "purge by text/plain", method: "POST", path: "/cache/purge",
			contentType: "text/plain", body: `{"tags":["a"]}`, want: 415},
		{name: "worker deploy by text/plain", method: "PUT", path: "/workers/counter",
			contentType: "text/plain", body: "\x00asm\x01", want: 415},
		{name: "worker deploy from a foreign origin", method: "PUT", path: "/workers/counter",
			origin: "http://evil.example", contentType: "application/wasm", body: "\x00asm\x01", want: 403},
		{name: "deployment drop without content type", method: "DELETE", path: "/workers/counter/deployment", want: 415},
		{name: "deployment drop from a foreign origin", method: "DELETE", path: "/workers/counter/deployment",
			origin: "http://evil.example", contentType: "application/json", want: 403},
		{name: "cron slot by text/plain", method: "POST", path: "/workers/counter/scheduled",
			contentType: "text/plain", body: `{"cron":"* * * * *"}`, want: 415},
		{name: "cron slot from a foreign origin", method: "POST", path: "/workers/counter/scheduled",
			origin: "http://evil.example", contentType: "application/json", body: `{"cron":"* * * * *"}`, want: 403},
		{name: "config read after rebinding", method: "GET", path: "/config", host: "evil.example:%p", want: 403},
		{name: "config read from a foreign origin", method: "GET", path: "/config", origin: "http://evil.example", want: 403},
	} {
		t.Run(a.name, func(t *testing.T) {
			code, h, body := a.send(t, base)
			if code != a.want {
				t.Errorf("status = %d, want %d (body %q)", code, a.want, body)
			}
			var e errorBody
			if h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
				t.Errorf("answer is not a JSON error: %s %q", h.Get("Content-Type"), body)
			}
		})
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.loads != 0 || fc.reloads != 0 || len(fc.drains) != 0 || string(fc.config) != before {
		t.Errorf("state changed: loads=%d reloads=%d drains=%v config=%q", fc.loads, fc.reloads, fc.drains, fc.config)
	}
	if string(dc.deployed["counter"]) != "old" || dc.drops != 0 {
		t.Errorf("worker deployed or dropped by a refused request: %q, %d drops", dc.deployed["counter"], dc.drops)
	}
}

// both is a Controller that also deploys workers.
type both struct {
	*fakeController
	*deployController
}

// TestLocalClientsAccepted checks the names a local client (curl, the verge CLI, a browser on
// the admin page itself) uses are accepted, with the right content types.
func TestLocalClientsAccepted(t *testing.T) {
	fc := &fakeController{config: []byte("a: 1\n")}
	base := startServer(t, &Server{Controller: fc, AllowedHosts: []string{"admin.example.com", "ops.example:8443"}})
	for _, a := range []attack{
		{name: "loopback IPv4", method: "GET", path: "/healthz", host: "127.0.0.1:%p", want: 200},
		{name: "localhost", method: "GET", path: "/healthz", host: "localhost:%p", want: 200},
		{name: "localhost with trailing dot", method: "GET", path: "/healthz", host: "localhost.:%p", want: 200},
		{name: "LOCALHOST", method: "GET", path: "/healthz", host: "LOCALHOST:%p", want: 200},
		{name: "loopback IPv6", method: "GET", path: "/healthz", host: "[::1]:%p", want: 200},
		{name: "same-origin page", method: "POST", path: "/config", host: "localhost:%p", origin: "http://localhost:%p",
			contentType: "application/yaml", body: "b: 2\n", want: 200},
		{name: "same-origin fetch metadata", method: "POST", path: "/config", fetchSite: "same-origin",
			contentType: "application/yaml", body: "b: 2\n", want: 200},
		{name: "yaml alias", method: "POST", path: "/config", contentType: "text/yaml", body: "b: 2\n", want: 200},
		{name: "json config", method: "POST", path: "/config", contentType: "application/json; charset=utf-8", body: `{"b": 2}`, want: 200},
		{name: "reload with json", method: "POST", path: "/reload", contentType: "application/json", want: 200},
		{name: "configured name, any port", method: "GET", path: "/healthz", host: "admin.example.com", want: 200},
		{name: "configured name behind https", method: "POST", path: "/reload", host: "admin.example.com",
			origin: "https://admin.example.com", contentType: "application/json", want: 200},
		{name: "configured name with port", method: "GET", path: "/healthz", host: "ops.example:8443", want: 200},
		{name: "configured name, other port", method: "GET", path: "/healthz", host: "ops.example:8444", want: 403},
	} {
		t.Run(a.name, func(t *testing.T) {
			if code, _, body := a.send(t, base); code != a.want {
				t.Errorf("status = %d, want %d (body %q)", code, a.want, body)
			}
		})
	}
}

func TestMuxErrorsAreJSON(t *testing.T) {
	base := startServer(t, &Server{Controller: &fakeController{}})
	code, h, body := do(t, "GET", base+"/nope", "", nil)
	if code != 404 || h.Get("Content-Type") != "application/json" || body != `{"error":"no such endpoint"}`+"\n" {
		t.Errorf("GET /nope = %d %s %q", code, h.Get("Content-Type"), body)
	}
	code, h, body = do(t, "DELETE", base+"/config", "", nil)
	if code != 405 || h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"error"`) ||
		!strings.Contains(h.Get("Allow"), "POST") {
		t.Errorf("DELETE /config = %d %s Allow=%q %q", code, h.Get("Content-Type"), h.Get("Allow"), body)
	}
	code, h, _ = do(t, "POST", base+"/reload", "", nil) // do sends application/json
	if code != 200 {
		t.Errorf("POST /reload = %d", code)
	}
	req, _ := http.NewRequest("POST", base+"/reload", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 || resp.Header.Get("Accept-Post") != "application/json" {
		t.Errorf("POST /reload without Content-Type = %d Accept-Post=%q, want 415 application/json", resp.StatusCode, resp.Header.Get("Accept-Post"))
	}
}

func TestShortTokenRefused(t *testing.T) {
	for _, tok := range []string{"x", "fifteen-bytes!!"} {
		s := &Server{Addr: "127.0.0.1:0", Token: tok, Controller: &fakeController{}}
		if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "at least 16") {
			s.Shutdown(t.Context())
			t.Errorf("Start with a %d-byte token = %v, want a refusal", len(tok), err)
		}
	}
	if err := CheckExposure("0.0.0.0:9901", ""); err == nil || !strings.Contains(err.Error(), "without a token") {
		t.Errorf("CheckExposure(0.0.0.0, no token) = %v", err)
	}
	if err := CheckExposure("0.0.0.0:9901", "0123456789abcdef"); err != nil {
		t.Errorf("CheckExposure(0.0.0.0, token) = %v", err)
	}
	if err := CheckExposure("", ""); err != nil {
		t.Errorf("CheckExposure(default) = %v", err)
	}
}

func TestHostPolicy(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, tc := range []struct {
		name       string
		addr       net.Addr
		configured string
		extra      []string
		host, def  string
		want       bool
	}{
		{"listen ip", tcp("127.0.0.1:9901"), "127.0.0.1:9901", nil, "127.0.0.1:9901", "80", true},
		{"other loopback ip", tcp("127.0.0.1:9901"), "127.0.0.1:9901", nil, "127.0.0.2:9901", "80", true},
		{"public ip on loopback listener", tcp("127.0.0.1:9901"), "127.0.0.1:9901", nil, "192.0.2.1:9901", "80", false},
		{"wrong port", tcp("127.0.0.1:9901"), "127.0.0.1:9901", nil, "127.0.0.1:9902", "80", false},
		{"default port", tcp("127.0.0.1:80"), "127.0.0.1:80", nil, "localhost", "80", true},
		{"foreign name", tcp("127.0.0.1:9901"), "127.0.0.1:9901", nil, "evil.example:9901", "80", false},
		{"bare ipv6", tcp("[::1]:9901"), "[::1]:9901", nil, "::1", "80", false},
		{"zone", tcp("[::1]:9901"), "[::1]:9901", nil, "[fe80::1%25lo]:9901", "80", false},
		{"specific public ip", tcp("192.0.2.7:9901"), "192.0.2.7:9901", nil, "192.0.2.7:9901", "80", true},
		{"loopback name on public listener", tcp("192.0.2.7:9901"), "192.0.2.7:9901", nil, "localhost:9901", "80", false},
		{"configured name", tcp("127.0.0.1:9901"), "localhost:9901", nil, "localhost:9901", "80", true},
		{"wildcard loopback", tcp("0.0.0.0:9901"), "0.0.0.0:9901", nil, "127.0.0.1:9901", "80", true},
		{"wildcard foreign", tcp("0.0.0.0:9901"), "0.0.0.0:9901", nil, "evil.example:9901", "80", false},
		{"wildcard non-local ip", tcp("0.0.0.0:9901"), ":9901", nil, "203.0.113.250:9901", "80", false},
		{"extra name", tcp("127.0.0.1:9901"), "", []string{"Admin.Example.com"}, "admin.example.com:443", "80", true},
		{"extra ip with port", tcp("127.0.0.1:9901"), "", []string{"[2001:db8::1]:8443"}, "[2001:db8::1]:8443", "80", true},
		{"unix socket", &net.UnixAddr{Name: "/run/verge-admin.sock", Net: "unix"}, "", nil, "anything", "80", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHostPolicy(tc.addr, tc.configured, tc.extra)
			if got := p.allows(tc.host, tc.def); got != tc.want {
				t.Errorf("allows(%q) = %v, want %v (policy %+v)", tc.host, got, tc.want, p)
			}
		})
	}
}
