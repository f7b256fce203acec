package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunRateLimit runs `verge run` with a per-address limit on one route and checks the
// 429s, their fields, that another route is unaffected, and the metrics.
func TestRunRateLimit(t *testing.T) {
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
rate_limits:
  - {name: login, limit: 5, period: 1m}
routes:
  - {name: login, match: {path: /login}, rate_limits: [login], respond: {body: "welcome\n"}}
  - {name: home, respond: {body: "home\n"}}
`, p.addr, adminAddr, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, err := p.get(c, "/")
		return err == nil
	})
	status := func(path string) *http.Response {
		t.Helper()
		resp, err := c.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 5 {
		if r := status("/login"); r.StatusCode != 200 {
			t.Fatalf("login %d: %d", i, r.StatusCode)
		}
	}
	r := status("/login")
	if r.StatusCode != 429 || r.Header.Get("Retry-After") == "" || r.Header.Get("RateLimit-Policy") != `"login";q=5;w=60` {
		t.Fatalf("6th login: %d %v, want 429 with Retry-After and RateLimit-Policy", r.StatusCode, r.Header)
	}
	if r := status("/"); r.StatusCode != 200 {
		t.Fatalf("another route: %d", r.StatusCode)
	}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`verge_rate_limited_total{mode="enforce",route="login",rule="login"} 1`, `verge_rate_limit_keys{rule="login"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
