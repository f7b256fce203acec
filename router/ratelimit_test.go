package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/verge-edge/verge/overload"
)

const limitConfig = `
listeners:
  - name: main
    address: 127.0.0.1:0
    rate_limits: [global]
access_log: {output: "off"}
admin: {disabled: true}
rate_limits:
  - {name: global, limit: 1000000, period: 1s}
  - {name: per-ip, limit: 3, period: 1m}
  - {name: per-key, key: [header:X-Api-Key], algorithm: token_bucket, limit: 2, period: 1h, burst: 2}
  - {name: trial, limit: 1, period: 1m, mode: log}
  - {name: per-net, limit: 2, period: 1m, ipv4_prefix: 24}
routes:
  - name: ip
    match: {path: /ip}
    rate_limits: [per-ip]
    respond: {body: ip}
  - name: key
    match: {path: /key}
    rate_limits: [per-key]
    respond: {body: key}
  - name: trial
    match: {path: /trial}
    rate_limits: [trial]
    respond: {body: trial}
  - name: net
    match: {path: /net}
    rate_limits: [per-net]
    respond: {body: net}
  - name: free
    respond: {body: free}
`

func TestRateLimitRules(t *testing.T) {
	store := NewRateLimits()
	in, err := NewInstance(mustConfig(t, limitConfig), Deps{Transport: nopTransport{}, RateLimits: store})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	send := func(client, target string, header ...string) *fakeExchange {
		ex := newExchange("GET", "www.example.com", target)
		ex.conn.RemoteAddr = netip.MustParseAddrPort(client)
		for i := 0; i+1 < len(header); i += 2 {
			ex.req.Header.Add(header[i], header[i+1])
		}
		h.ServeExchange(ex)
		return ex
	}

	// Three per client address per minute, a fourth refused with the fields.
	for i := range 3 {
		if ex := send("192.0.2.1:1000", "/ip"); ex.resp.Status != 200 {
			t.Fatalf("request %d: status %d, want 200", i, ex.resp.Status)
		}
	}
	ex := send("192.0.2.1:1001", "/ip")
	if ex.resp.Status != 429 {
		t.Fatalf("4th request: status %d, want 429", ex.resp.Status)
	}
	if got := ex.resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=3;w=60` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if got := ex.resp.Header.Get("RateLimit"); !strings.HasPrefix(got, `"per-ip";r=0;t=`) {
		t.Errorf("RateLimit %q", got)
	}
	if got := ex.resp.Header.Get("Retry-After"); got == "" || got == "0" {
		t.Errorf("Retry-After %q, want a positive number of seconds", got)
	}
	if !strings.Contains(ex.body.String(), "429") {
		t.Errorf("body %q", ex.body.String())
	}
	// Another address and another route are not affected.
	if ex := send("192.0.2.2:1000", "/ip"); ex.resp.Status != 200 {
		t.Fatalf("another client: status %d", ex.resp.Status)
	}
	if ex := send("192.0.2.1:1000", "/free"); ex.resp.Status != 200 {
		t.Fatalf("a route without the rule: status %d", ex.resp.Status)
	}
	// An IPv6 client's /64 is one key.
	for i := range 3 {
		send(fmt.Sprintf("[2001:db8::%d]:1000", i+1), "/ip")
	}
	if ex := send("[2001:db8::ff]:1000", "/ip"); ex.resp.Status != 429 {
		t.Fatalf("4th request from the same /64: status %d, want 429", ex.resp.Status)
	}
	// ipv4_prefix 24 counts a /24 as one client.
	send("198.51.100.1:1", "/net")
	send("198.51.100.2:1", "/net")
	if ex := send("198.51.100.3:1", "/net"); ex.resp.Status != 429 {
		t.Fatalf("3rd request from the same /24: status %d, want 429", ex.resp.Status)
	}
	if ex := send("198.51.101.3:1", "/net"); ex.resp.Status != 200 {
		t.Fatalf("another /24: status %d, want 200", ex.resp.Status)
	}

	// Token bucket keyed on a header: a burst of 2 per key.
	for i := range 2 {
		if ex := send("192.0.2.9:1", "/key", "X-Api-Key", "a"); ex.resp.Status != 200 {
			t.Fatalf("key a request %d: status %d", i, ex.resp.Status)
		}
	}
	if ex := send("192.0.2.10:1", "/key", "X-Api-Key", "a"); ex.resp.Status != 429 {
		t.Fatalf("key a from another address past the burst: status %d, want 429", ex.resp.Status)
	}
	if ex := send("192.0.2.9:1", "/key", "X-Api-Key", "b"); ex.resp.Status != 200 {
		t.Fatalf("key b: status %d", ex.resp.Status)
	}

	// Log mode lets everything through and counts what it would have refused.
	for range 5 {
		if ex := send("192.0.2.1:1000", "/trial"); ex.resp.Status != 200 {
			t.Fatalf("log mode refused a request: %d", ex.resp.Status)
		}
	}
	got := map[string]uint64{}
	for _, st := range store.Stats() {
		for route, n := range st.Limited {
			got[st.Rule+"/"+route] = n
		}
	}
	want := map[string]uint64{"per-ip/ip": 2, "per-key/key": 1, "trial/trial": 4, "per-net/net": 1, "global/ip": 0, "global/key": 0, "global/trial": 0, "global/net": 0, "global/free": 0}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("limited %s = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}

	// A reload that keeps the rule keeps its counts; one that changes it starts over.
	in2, err := NewInstance(mustConfig(t, limitConfig), Deps{Transport: nopTransport{}, RateLimits: store})
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Close(context.Background())
	h = in2.Handler("main")
	if ex := send("192.0.2.1:1000", "/ip"); ex.resp.Status != 429 {
		t.Fatalf("after a reload with the same rule: status %d, want 429", ex.resp.Status)
	}
	in3, err := NewInstance(mustConfig(t, strings.Replace(limitConfig, "{name: per-ip, limit: 3,", "{name: per-ip, limit: 4,", 1)), Deps{Transport: nopTransport{}, RateLimits: store})
	if err != nil {
		t.Fatal(err)
	}
	defer in3.Close(context.Background())
	h = in3.Handler("main")
	if ex := send("192.0.2.1:1000", "/ip"); ex.resp.Status != 200 {
		t.Fatalf("after a reload changing the limit: status %d, want 200", ex.resp.Status)
	}
}

// TestRateLimitResponseHeaders checks response_headers on a proxied route, through a runtime
// and a real origin.
func TestRateLimitResponseHeaders(t *testing.T) {
	o := origin(t, "from origin")
	y := runtimeConfig("", o.URL) + "    rate_limits: [api]\nrate_limits:\n  - {name: api, limit: 10, period: 10s, response_headers: true}\n"
	y = strings.Replace(y, "routes:\n  - name: proxied\n    upstream: app\n", "routes:\n  - name: proxied\n    upstream: app\n    rate_limits: [api]\n", 1)
	y = strings.Replace(y, "    rate_limits: [api]\nrate_limits:", "rate_limits:", 1)
	_, base := startRuntime(t, y)
	for i := range 11 {
		resp, err := http.Get(base + "/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i < 10 {
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, resp.StatusCode)
			}
			if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"api";r=%d;t=`, 9-i); !strings.HasPrefix(got, want) {
				t.Fatalf("request %d: RateLimit %q, want prefix %q", i, got, want)
			}
			if got := resp.Header.Get("RateLimit-Policy"); got != `"api";q=10;w=10` {
				t.Fatalf("RateLimit-Policy %q", got)
			}
			continue
		}
		if resp.StatusCode != 429 {
			t.Fatalf("11th request: %d, want 429", resp.StatusCode)
		}
	}
}

func BenchmarkServeRespondRateLimited(b *testing.B) {
	y := strings.Replace(matchConfig, "routes:\n  - name: any\n", "rate_limits: [{name: ip, limit: 1000000000, period: 1s}]\nroutes:\n  - name: any\n    rate_limits: [ip]\n", 1)
	in, err := NewInstance(mustConfig(b, y), Deps{Transport: nopTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	ex := newExchange("GET", "www.example.com", "/")
	b.ReportAllocs()
	for b.Loop() {
		ex.body.Reset()
		ex.resp.Header.Reset()
		h.ServeExchange(ex)
		if ex.resp.Status != 200 {
			b.Fatalf("status %d", ex.resp.Status)
		}
	}
}

func TestRouteIPRules(t *testing.T) {
	y := `
listeners: [{name: main, address: 127.0.0.1:0}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - name: admin
    match: {path_prefix: /admin}
    ip_rules: {allow: [192.0.2.0/24, "2001:db8::/32"], deny: [192.0.2.66]}
    respond: {body: admin}
  - name: open
    respond: {body: open}
`
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	for _, tc := range []struct {
		client, target string
		want           int
	}{
		{"192.0.2.1:1", "/admin/x", 200},
		{"[::ffff:192.0.2.1]:1", "/admin/x", 200},
		{"[2001:db8::5]:1", "/admin/x", 200},
		{"192.0.2.66:1", "/admin/x", 403},
		{"198.51.100.1:1", "/admin/x", 403},
		{"198.51.100.1:1", "/other", 200},
	} {
		ex := newExchange("GET", "www.example.com", tc.target)
		ex.conn.RemoteAddr = netip.MustParseAddrPort(tc.client)
		h.ServeExchange(ex)
		if ex.resp.Status != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.client, tc.target, ex.resp.Status, tc.want)
		}
	}
}

// TestOverloadShedsLowPriority marks the process overloaded: the low-priority route answers
// 503 with Retry-After, the normal one is served, and both serve again once it calms down.
func TestOverloadShedsLowPriority(t *testing.T) {
	y := `
listeners: [{name: main, address: 127.0.0.1:0}]
access_log: {output: "off"}
admin: {disabled: true}
overload: {cpu: 0.9}
routes:
  - {name: batch, match: {path_prefix: /batch}, priority: low, respond: {body: batch}}
  - {name: api, respond: {body: api}}
`
	mon := overload.New(overload.Thresholds{CPU: 0.9}, 0, nil)
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}, Overload: mon})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	status := func(target string) (int, string) {
		ex := newExchange("GET", "www.example.com", target)
		h.ServeExchange(ex)
		return ex.resp.Status, ex.resp.Header.Get("Retry-After")
	}
	if st, _ := status("/batch/1"); st != 200 {
		t.Fatalf("low priority, calm: %d", st)
	}
	mon.Update(overload.Sample{CPU: 0.97})
	if st, ra := status("/batch/1"); st != 503 || ra == "" {
		t.Fatalf("low priority, overloaded: %d Retry-After %q, want 503 with Retry-After", st, ra)
	}
	if st, _ := status("/api"); st != 200 {
		t.Fatalf("normal priority, overloaded: %d", st)
	}
	mon.Update(overload.Sample{CPU: 0.1})
	mon.Update(overload.Sample{CPU: 0.1})
	if st, _ := status("/batch/1"); st != 200 {
		t.Fatalf("low priority after calming down: %d", st)
	}
	if n := mon.ShedLowPriority.Load(); n != 1 {
		t.Fatalf("ShedLowPriority %d, want 1", n)
	}
}

// TestListenerIPRulesPerRequest: the listener's rules also apply to each request (HTTP/3 and
// connections opened before a list changed never pass the accept check).
func TestListenerIPRulesPerRequest(t *testing.T) {
	y := `
listeners: [{name: main, address: 127.0.0.1:0, ip_rules: {deny: [192.0.2.0/24]}}]
access_log: {output: "off"}
admin: {disabled: true}
routes: [{name: any, respond: {body: ok}}]
`
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	for client, want := range map[string]int{"192.0.2.9:1": 403, "[::ffff:192.0.2.9]:1": 403, "198.51.100.1:1": 200} {
		ex := newExchange("GET", "www.example.com", "/")
		ex.conn.RemoteAddr = netip.MustParseAddrPort(client)
		h.ServeExchange(ex)
		if ex.resp.Status != want {
			t.Errorf("%s: %d, want %d", client, ex.resp.Status, want)
		}
	}
}

// TestRateLimitTarpit: a refused request of a rule with a tarpit is still answered 429 with
// its fields (after the delay), and a client that gives up ends the wait.
func TestRateLimitTarpit(t *testing.T) {
	y := `
listeners: [{name: main, address: 127.0.0.1:0}]
access_log: {output: "off"}
admin: {disabled: true}
rate_limits: [{name: slow, limit: 1, period: 1h, tarpit: 20ms}]
routes: [{name: any, rate_limits: [slow], respond: {body: ok}}]
`
	in, err := NewInstance(mustConfig(t, y), Deps{Transport: nopTransport{}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close(context.Background())
	h := in.Handler("main")
	if ex := newExchange("GET", "www.example.com", "/"); true {
		h.ServeExchange(ex)
		if ex.resp.Status != 200 {
			t.Fatalf("first: %d", ex.resp.Status)
		}
	}
	ex := newExchange("GET", "www.example.com", "/")
	h.ServeExchange(ex)
	if ex.resp.Status != 429 || ex.resp.Header.Get("RateLimit-Policy") == "" {
		t.Fatalf("second: %d %v, want 429 with the fields", ex.resp.Status, ex.resp.Header)
	}
}
