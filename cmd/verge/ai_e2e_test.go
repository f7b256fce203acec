package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/ai"
	"github.com/verge-edge/verge/ai/aitest"
	"github.com/verge-edge/verge/internal/testwasm"
)

// TestRunAIGateway drives an ai_gateway through `verge run` in front of OpenAI-compatible
// servers the test starts: a healthy one (healthyProvider) and one made to fail, which is
// tried first. From the client it observes failover, caching of an identical request, the
// per-key rate limit, and a stream passed through event by event; then the access log's and
// the metrics' AI numbers, and that the providers never saw the clients' keys.
func TestRunAIGateway(t *testing.T) {
	failing := &aitest.Server{Name: "failing", FailStatus: 503}
	failURL := httptest.NewServer(failing)
	t.Cleanup(failURL.Close)
	healthyName, healthyURL, healthyCount := healthyProvider(t)
	step := make(chan struct{})
	stepper := &aitest.Server{Name: "stepper", Step: step}
	stepURL := httptest.NewServer(stepper)
	t.Cleanup(stepURL.Close)

	adminAddr := freePort(t)
	var accessLog string
	p := launchVerge(t, func(p *proc) {
		accessLog = filepath.Join(p.dir, "access.log")
		os.WriteFile(filepath.Join(p.dir, "key-a"), []byte("client-key-aaaaaaaaaaaaaaaa\n"), 0o600)
		os.WriteFile(filepath.Join(p.dir, "key-b"), []byte("client-key-bbbbbbbbbbbbbbbb\n"), 0o600)
		os.WriteFile(filepath.Join(p.dir, "provider-key"), []byte("sk-provider-secret\n"), 0o600)
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: %q}
pid_file: %q
ai:
  providers:
    - {name: failing, base_url: "%s/v1", api_key: {file: provider-key}, priority: 0, timeouts: {first_token: 5s}}
    - {name: %s, base_url: "%s/v1", api_key: {file: provider-key}, priority: 1, prices: {verge-tiny: {input: 0.5, output: 2}}}
    - {name: stepper, base_url: "%s/v1", models: [stepper], priority: -1}
    - {name: inproc, type: local, priority: 9}
routes:
  - name: in-process
    match: {path_prefix: /local/v1/}
    ai_gateway: {providers: [inproc]}
  - name: ai
    match: {path_prefix: /v1/}
    ai_gateway:
      keys:
        - {name: team-a, key: {file: key-a}}
        - {name: team-b, key: {file: key-b}}
      cache: {ttl: 1h}
      rate_limit: {requests: 5, period: 1h}
`, p.addr, adminAddr, accessLog, p.pidFile, failURL.URL, healthyName, healthyURL, stepURL.URL)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + p.addr + "/v1"
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		resp, err := c.Get(base + "/models")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	post := func(key, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	const keyA, keyB = "client-key-aaaaaaaaaaaaaaaa", "client-key-bbbbbbbbbbbbbbbb"
	body := `{"model":"verge-tiny","messages":[{"role":"user","content":"Is this gateway working?"}],"max_tokens":8}`

	if resp, _ := post("not-a-key", body); resp.StatusCode != 401 {
		t.Fatalf("bad key: %d", resp.StatusCode)
	}
	// Failover: the failing provider answers 503, the healthy one the request.
	resp, first := post(keyA, body)
	if resp.StatusCode != 200 || resp.Header.Get(ai.HeaderProvider) != healthyName || resp.Header.Get(ai.HeaderCache) != "MISS" || !strings.Contains(first, `"choices"`) {
		t.Fatalf("first request: %d %v %s", resp.StatusCode, resp.Header, first)
	}
	if failing.Requests() != 1 || healthyCount() != 1 {
		t.Fatalf("failing got %d, healthy %d requests; want 1 and 1", failing.Requests(), healthyCount())
	}
	// Caching: the identical request (keys in another order) comes from the cache.
	same := `{"max_tokens":8, "messages":[{"content":"Is this gateway working?","role":"user"}], "model":"verge-tiny"}`
	resp, second := post(keyA, same)
	if resp.StatusCode != 200 || resp.Header.Get(ai.HeaderCache) != "HIT" || second != first {
		t.Fatalf("second request: %d %v\n%s\nwant the first's\n%s", resp.StatusCode, resp.Header, second, first)
	}
	if failing.Requests() != 1 || healthyCount() != 1 {
		t.Fatalf("a cache hit reached the providers: failing %d, healthy %d", failing.Requests(), healthyCount())
	}
	// Another key does not share team-a's entry.
	if resp, _ := post(keyB, body); resp.Header.Get(ai.HeaderCache) != "MISS" {
		t.Fatalf("team-b: %v", resp.Header)
	}

	// Streaming: each event reaches the client before the server may send the next.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/chat/completions",
		strings.NewReader(`{"model":"stepper","stream":true,"messages":[{"role":"user","content":"go"}]}`))
	req.Header.Set("Authorization", "Bearer "+keyA)
	go func() {
		select {
		case step <- struct{}{}: // the first event
		case <-ctx.Done():
		}
	}()
	sresp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if sresp.Header.Get("Content-Type") != "text/event-stream" || sresp.Header.Get(ai.HeaderProvider) != "stepper" {
		t.Fatalf("stream head: %d %v", sresp.StatusCode, sresp.Header)
	}
	br := bufio.NewReader(sresp.Body)
	for i, want := range []string{"hello", " from", " stepper"} {
		if i > 0 {
			select {
			case step <- struct{}{}:
			case <-ctx.Done():
				t.Fatalf("the server could not send event %d", i)
			}
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, `"content":"`+want+`"`) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
	}
	rest, _ := io.ReadAll(br)
	sresp.Body.Close()
	if !strings.Contains(string(rest), "data: [DONE]") {
		t.Fatalf("stream end: %q", rest)
	}

	// Rate limit: team-a has made 3 requests of 5 (the one with a wrong key is nobody's).
	for i := range 2 {
		if resp, b := post(keyA, body, "Cache-Control", "no-cache"); resp.StatusCode != 200 || resp.Header.Get(ai.HeaderCache) != "BYPASS" {
			t.Fatalf("request %d: %d %s", i+4, resp.StatusCode, b)
		}
	}
	resp, b := post(keyA, body)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(b, "rate_limit_exceeded") {
		t.Fatalf("6th request: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	if resp, _ := post(keyB, body); resp.StatusCode != 200 {
		t.Fatalf("team-b after team-a was limited: %d", resp.StatusCode)
	}

	// A reload that changes nothing keeps the counts and the cache.
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 30*time.Second, func() bool {
		r, err := c.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return strings.Contains(string(b), `verge_config_reloads_total{result="success"} 1`)
	})
	if resp, _ := post(keyA, body); resp.StatusCode != 429 {
		t.Fatalf("team-a after the reload: %d, want 429 still", resp.StatusCode)
	}
	if resp, _ := post(keyB, body); resp.StatusCode != 200 || resp.Header.Get(ai.HeaderCache) != "HIT" {
		t.Fatalf("team-b after the reload: %d %v, want its cached answer", resp.StatusCode, resp.Header)
	}

	// A provider of type local runs the built-in model in process.
	lresp, err := c.Post("http://"+p.addr+"/local/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(lresp.Body)
	lresp.Body.Close()
	if lresp.StatusCode != 200 || lresp.Header.Get(ai.HeaderProvider) != "inproc" || !strings.Contains(string(lb), `"usage"`) {
		t.Fatalf("in-process model: %d %v %s", lresp.StatusCode, lresp.Header, lb)
	}

	for _, a := range failing.Authorizations() {
		if a != "Bearer sk-provider-secret" {
			t.Errorf("a provider saw Authorization %q", a)
		}
	}
	// The access log and the metrics carry the AI numbers.
	waitFor(t, "the access log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(accessLog)
		return strings.Count(string(b), `"ai_key"`) >= 10
	})
	logged, _ := os.ReadFile(accessLog)
	var miss string
	for _, l := range strings.Split(string(logged), "\n") {
		if strings.Contains(l, `"ai_cache":"miss"`) && strings.Contains(l, `"ai_key":"team-a"`) {
			miss = l
			break
		}
	}
	for _, want := range []string{`"ai_provider":"` + healthyName + `"`, `"ai_model":"verge-tiny"`, `"ai_first_byte":0.`, `provider failing: status 503`, fmt.Sprintf(`"bytes_received":%d,`, len(body))} {
		if !strings.Contains(miss, want) {
			t.Errorf("access log line %s lacks %s", miss, want)
		}
	}
	if strings.Contains(miss, `"ai_tokens_out":0,`) || strings.Contains(miss, `"ai_cost":0,`) {
		t.Errorf("access log line %s has no tokens or cost", miss)
	}
	mresp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`verge_ai_requests_total{cache="hit",code="200",key="team-a",model="verge-tiny",provider="` + healthyName + `",route="ai"} 1`,
		`verge_ai_requests_total{cache="",code="429",key="team-a",model="",provider="",route="ai"} 2`,
		`verge_ai_provider_failures_total{provider="failing",route="ai"}`,
		`verge_ai_tokens_total{direction="out",key="team-a",model="verge-tiny",provider="` + healthyName + `",route="ai"}`,
		`verge_ai_first_token_seconds_count{model="stepper",provider="stepper",route="ai",stream="true"} 1`,
		`verge_ai_cost_total{key="team-a",model="verge-tiny"`,
	} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestValidateAIExample: `verge validate` accepts examples/ai-gateway.yaml, and names the
// file, line and field of a mistake in an ai section.
func TestValidateAIExample(t *testing.T) {
	var stdout, stderr bytes.Buffer
	ex := filepath.Join(testwasm.Root(), "examples", "ai-gateway.yaml")
	if code := run([]string{"validate", "-c", ex}, &stdout, &stderr); code != 0 || stdout.String() != "ok\n" {
		t.Fatalf("validate %s: code %d stdout %q stderr %q", ex, code, stdout.String(), stderr.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "listeners: [{address: 127.0.0.1:8080}]\nai:\n  providers:\n    - {name: p, base_url: \"ftp://x\"}\nroutes: [{ai_gateway: {providers: [q]}}]\n")
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"validate", "-c", bad}, &stdout, &stderr)
	for _, want := range []string{bad + `:4:27: ai.providers[0].base_url: invalid base_url "ftp://x"`, bad + `:5:36: routes[0].ai_gateway.providers[0]: unknown AI provider "q"`} {
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("validate bad: code %d stderr %q, want %q", code, stderr.String(), want)
		}
	}
}
