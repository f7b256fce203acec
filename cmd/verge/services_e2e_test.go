package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestRunServiceBindings runs examples/workers/services through `verge run`: gateway calls
// auth through the service binding AUTH in-process. auth answers with its own env; its CPU
// limit (50ms, while gateway's is 10s) fails gateway's call with a 5xx, counted against
// auth, not gateway; a binding gateway does not have is refused; a worker bound to itself
// stops at the depth limit instead of exhausting the stack.
func TestRunServiceBindings(t *testing.T) {
	gateway := testwasm.BuildFile(t, "examples/workers/services/gateway")
	auth := testwasm.BuildFile(t, "examples/workers/services/auth")
	admin := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
routes: [{name: gw, worker: gateway}]
workers:
  - name: gateway
    module: %q
    services:
      - {binding: AUTH, service: auth}
      - {binding: SELF, service: gateway}
    limits: {cpu_time: 10s}
  - name: auth
    module: %q
    env: {TOKEN: s3cret, USER: alice}
    limits: {cpu_time: 50ms}
`, p.addr, admin, p.pidFile, p.dir+"/data", gateway, auth)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 60 * time.Second}
	do := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, p.stderr)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "verge run to serve the gateway", 90*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/hello")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200 || resp.StatusCode == 401
	})
	if code, body := do("/hello", "s3cret"); code != 200 || body != "hello alice\n" {
		t.Fatalf("/hello with the token: %d %q\n%s", code, body, p.stderr)
	}
	if code, body := do("/hello", "wrong"); code != 401 || !strings.Contains(body, "bad token") {
		t.Fatalf("/hello with a wrong token: %d %q", code, body)
	}

	// The callee's CPU limit fails the call; the caller, whose own limit is far away,
	// answers 502 with the callee's error.
	code, body := do("/spin", "s3cret")
	if code != 502 || !strings.Contains(body, "worker auth") || !strings.Contains(body, "cpu") {
		t.Fatalf("/spin: %d %q, want 502 naming auth's CPU limit\n%s", code, body, p.stderr)
	}
	metrics := func() string {
		resp, err := c.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := metrics()
	if !strings.Contains(m, `verge_worker_errors_total{kind="cpu_limit",worker="auth"} 1`) || !strings.Contains(m, `verge_worker_errors_total{kind="cpu_limit",worker="gateway"} 0`) {
		t.Fatalf("the CPU limit was not auth's alone:\n%s", grepLines(m, "cpu_limit"))
	}
	// The gateway keeps serving after its callee failed.
	if code, body := do("/hello", "s3cret"); code != 200 || body != "hello alice\n" {
		t.Fatalf("/hello after the callee failed: %d %q", code, body)
	}

	// No binding, no call.
	if code, body := do("/unbound", ""); code != 500 || !strings.Contains(body, `no service bound as "NOPE"`) {
		t.Fatalf("/unbound: %d %q", code, body)
	}
	// gateway -> gateway -> ...: 16 workers on the chain, then a clear error.
	if code, body := do("/loop", ""); code != 508 || !strings.Contains(body, "limit 16") {
		t.Fatalf("/loop: %d %q\n%s", code, body, p.stderr)
	}
	if code, body := do("/hello", "s3cret"); code != 200 {
		t.Fatalf("/hello after the loop: %d %q", code, body)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestValidateServiceBindings: a binding to a worker that does not exist is a config error
// naming file, line and field.
func TestValidateServiceBindings(t *testing.T) {
	dir := t.TempDir()
	mod := dir + "/w.wasm"
	os.WriteFile(mod, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	cfg := dir + "/verge.yaml"
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
workers:
  - name: gateway
    module: %q
    services:
      - {binding: AUTH, service: missing}
    triggers:
      crons: ["*/5 * * * *", "61 * * * *"]
`, mod)), 0o644)
	var out strings.Builder
	if code := run([]string{"validate", "-c", cfg}, &out, &out); code == 0 {
		t.Fatal("validate accepted an unknown service and a bad cron")
	}
	for _, want := range []string{
		`verge.yaml:6:34: workers[0].services[0].service: unknown worker "missing"`,
		`verge.yaml:8:30: workers[0].triggers.crons[1]: cron "61 * * * *": minute field "61": 61 out of range 0-59`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out.String())
		}
	}
}
