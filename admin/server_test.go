package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeController records the calls it gets.
type fakeController struct {
	mu       sync.Mutex
	config   []byte
	ready    bool
	loads    int
	reloads  int
	drains   []string
	loadErr  error
	reloadEr error
}

func (f *fakeController) CurrentConfig() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.config
}

func (f *fakeController) LoadConfig(_ context.Context, yaml []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.loadErr != nil {
		return f.loadErr
	}
	f.config = append([]byte(nil), yaml...)
	return nil
}

func (f *fakeController) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadEr
}

func (f *fakeController) Upstreams() []UpstreamStatus {
	return []UpstreamStatus{
		{Group: "web", Address: "10.0.0.1:80", Weight: 2, Healthy: true, InFlight: 3, Fails: 1},
		{Group: "web", Address: "[::1]:81", Weight: 1, Draining: true},
	}
}

func (f *fakeController) SetDrain(group, address string, drain bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if group != "web" {
		return fmt.Errorf("upstream group %q: %w", group, ErrNotFound)
	}
	if address == "broken:1" {
		return errors.New("state store closed")
	}
	f.drains = append(f.drains, fmt.Sprintf("%s/%s=%v", group, address, drain))
	return nil
}

func (f *fakeController) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// startServer starts s on a loopback port and returns its base URL.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.Addr == "" {
		s.Addr = "127.0.0.1:0"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return "http://" + s.ListenAddr().String()
}

var client = &http.Client{Timeout: 5 * time.Second}

func do(t *testing.T, method, url, token string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ct := contentTypeFor(method, req.URL.Path); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// contentTypeFor is the Content-Type a well-behaved client sends: YAML for /config, JSON for
// the other state-changing endpoints.
func contentTypeFor(method, path string) string {
	switch {
	case method == "GET" || method == "HEAD":
		return ""
	case path == "/config":
		return "application/yaml"
	}
	return "application/json"
}

func TestAuthentication(t *testing.T) {
	const token = "s3cret-token-0123456789"
	base := startServer(t, &Server{Token: token, Controller: &fakeController{ready: true, config: []byte("a: 1\n")}})
	for _, tc := range []struct {
		name, path, auth string
		want             int
		challenge        string
	}{
		{"healthz open without token", "/healthz", "", 200, ""},
		{"no token", "/config", "", 401, `Bearer realm="verge-admin"`},
		{"wrong token", "/config", "Bearer s3cret-token-012345678X", 401, `Bearer realm="verge-admin", error="invalid_token"`},
		{"token prefix", "/config", "Bearer s3cret-token", 401, `Bearer realm="verge-admin", error="invalid_token"`},
		{"wrong scheme", "/config", "Basic " + token, 401, `Bearer realm="verge-admin", error="invalid_token"`},
		{"right token", "/config", "Bearer " + token, 200, ""},
		{"scheme is case-insensitive", "/readyz", "bearer " + token, 200, ""},
		{"metrics need the token", "/metrics", "", 401, `Bearer realm="verge-admin"`},
		{"readyz needs the token", "/readyz", "", 401, `Bearer realm="verge-admin"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
		})
	}
	// POST endpoints are protected too, and the controller is not reached.
	fc := &fakeController{}
	base2 := startServer(t, &Server{Token: token, Controller: fc})
	if code, _, _ := do(t, "POST", base2+"/config", "", strings.NewReader("x: 1")); code != 401 {
		t.Errorf("POST /config without token = %d, want 401", code)
	}
	if code, _, _ := do(t, "POST", base2+"/upstreams/web/10.0.0.1:80/drain", "nope", nil); code != 401 {
		t.Errorf("POST drain with wrong token = %d, want 401", code)
	}
	if fc.loads != 0 || len(fc.drains) != 0 {
		t.Errorf("controller reached without authentication: loads=%d drains=%v", fc.loads, fc.drains)
	}
}

func TestRefusesNonLoopbackWithoutToken(t *testing.T) {
	for _, addr := range []string{":9901", "0.0.0.0:0", "[::]:0", "192.0.2.1:9901", "admin.example:9901"} {
		s := &Server{Addr: addr, Controller: &fakeController{}}
		err := s.Start(t.Context())
		if err == nil {
			s.Shutdown(t.Context())
			t.Errorf("Start(%q) without token succeeded, want refusal", addr)
			continue
		}
		if !strings.Contains(err.Error(), "without a token") {
			t.Errorf("Start(%q) error = %v, want a clear refusal", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if !isLoopbackAddr(addr) {
			t.Errorf("isLoopbackAddr(%q) = false, want true", addr)
		}
	}
	// Serve checks the listener it is given.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Controller: &fakeController{}}
	if err := s.Serve(&fakeAddrListener{Listener: ln, addr: &net.TCPAddr{IP: net.IPv4zero, Port: 9901}}); err == nil ||
		!strings.Contains(err.Error(), "without a token") {
		t.Errorf("Serve on 0.0.0.0 without token = %v, want refusal", err)
	}
	// With a token, any address is accepted.
	s2 := &Server{Addr: "0.0.0.0:0", Token: "0123456789abcdef", Controller: &fakeController{}}
	if err := s2.Start(t.Context()); err != nil {
		t.Errorf("Start on 0.0.0.0 with token: %v", err)
	}
	s2.Shutdown(t.Context())
	// A Controller is required.
	if err := (&Server{Addr: "127.0.0.1:0"}).Start(t.Context()); err == nil {
		t.Error("Start without Controller succeeded")
	}
}

type fakeAddrListener struct {
	net.Listener
	addr net.Addr
}

func (l *fakeAddrListener) Addr() net.Addr { return l.addr }

func TestEndpoints(t *testing.T) {
	fc := &fakeController{config: []byte("listeners: []\n")}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "verge_up 1\n")
	})
	base := startServer(t, &Server{Controller: fc, Metrics: metrics})

	check := func(method, path, body string, wantCode int, wantBody string) http.Header {
		t.Helper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		code, h, got := do(t, method, base+path, "", r)
		if code != wantCode || got != wantBody {
			t.Errorf("%s %s = %d %q, want %d %q", method, path, code, got, wantCode, wantBody)
		}
		return h
	}
	check("GET", "/healthz", "", 200, `{"status":"ok"}`+"\n")
	check("GET", "/readyz", "", 503, `{"status":"not ready"}`+"\n")
	fc.mu.Lock()
	fc.ready = true
	fc.mu.Unlock()
	h := check("GET", "/readyz", "", 200, `{"status":"ready"}`+"\n")
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	h = check("GET", "/config", "", 200, "listeners: []\n")
	if ct := h.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("GET /config Content-Type = %q, want application/yaml", ct)
	}
	check("POST", "/config", "routes: []\n", 200, `{"status":"loaded"}`+"\n")
	check("GET", "/config", "", 200, "routes: []\n")
	fc.mu.Lock()
	fc.loadErr = errors.New("verge.yaml:3:5: field listen: unknown key")
	fc.mu.Unlock()
	check("POST", "/config", "bad: [", 400, `{"error":"verge.yaml:3:5: field listen: unknown key"}`+"\n")
	check("GET", "/config", "", 200, "routes: []\n")
	check("POST", "/config", "", 400, `{"error":"empty body: send the YAML configuration"}`+"\n")

	check("POST", "/reload", "", 200, `{"status":"reloaded"}`+"\n")
	fc.mu.Lock()
	fc.reloadEr = errors.New("open verge.yaml: no such file")
	fc.mu.Unlock()
	check("POST", "/reload", "", 400, `{"error":"open verge.yaml: no such file"}`+"\n")
	if fc.reloads != 2 {
		t.Errorf("Reload called %d times, want 2", fc.reloads)
	}

	_, _, body := do(t, "GET", base+"/upstreams", "", nil)
	var ups []map[string]any
	if err := json.Unmarshal([]byte(body), &ups); err != nil {
		t.Fatalf("GET /upstreams: %v: %s", err, body)
	}
	if len(ups) != 2 || ups[0]["address"] != "10.0.0.1:80" || ups[0]["in_flight"] != 3.0 ||
		ups[0]["healthy"] != true || ups[0]["fails"] != 1.0 || ups[1]["draining"] != true || ups[1]["group"] != "web" {
		t.Errorf("GET /upstreams = %s", body)
	}

	check("POST", "/upstreams/web/10.0.0.1:80/drain", "", 200, `{"group":"web","address":"10.0.0.1:80","draining":true}`+"\n")
	check("POST", "/upstreams/web/%5B::1%5D:81/undrain", "", 200, `{"group":"web","address":"[::1]:81","draining":false}`+"\n")
	check("POST", "/upstreams/api/10.0.0.1:80/drain", "", 404, `{"error":"upstream group \"api\": not found"}`+"\n")
	check("POST", "/upstreams/web/broken:1/drain", "", 500, `{"error":"state store closed"}`+"\n")
	if got := strings.Join(fc.drains, ","); got != "web/10.0.0.1:80=true,web/[::1]:81=false" {
		t.Errorf("SetDrain calls = %s", got)
	}

	check("GET", "/metrics", "", 200, "verge_up 1\n")
	if code, h, _ := do(t, "GET", base+"/reload", "", nil); code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("GET /reload = %d Allow=%q, want 405 POST", code, h.Get("Allow"))
	}
	if code, _, _ := do(t, "GET", base+"/nope", "", nil); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestMetricsDisabled(t *testing.T) {
	base := startServer(t, &Server{Controller: &fakeController{}})
	if code, _, _ := do(t, "GET", base+"/metrics", "", nil); code != 404 {
		t.Errorf("GET /metrics without Metrics = %d, want 404", code)
	}
}

func TestBodyLimit(t *testing.T) {
	fc := &fakeController{}
	base := startServer(t, &Server{Controller: fc, MaxBodyBytes: 1024})
	code, _, body := do(t, "POST", base+"/config", "", strings.NewReader(strings.Repeat("a", 1025)))
	if code != 413 || !strings.Contains(body, "body limit") {
		t.Errorf("oversized POST /config = %d %q, want 413", code, body)
	}
	if code, _, _ := do(t, "POST", base+"/config", "", strings.NewReader(strings.Repeat("a", 1024))); code != 200 {
		t.Errorf("POST /config at the limit = %d, want 200", code)
	}
	if fc.loads != 1 {
		t.Errorf("LoadConfig called %d times, want 1 (not for the oversized body)", fc.loads)
	}
	if (&Server{}).maxBody() != 4<<20 {
		t.Errorf("default body limit = %d, want 4 MiB", (&Server{}).maxBody())
	}
}

func TestServeAndShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Controller: &fakeController{ready: true}}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/healthz"
	deadline := time.Now().Add(15 * time.Second) // a failure guard for a busy machine
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln2); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Serve = %v, want already started", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if _, err := client.Get(url); err == nil {
		t.Error("server still answers after Shutdown")
	}
}
