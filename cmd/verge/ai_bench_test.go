package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAIGatewayFirstTokenLatency measures the time to the first token of a streamed chat
// completion straight from an OpenAI-compatible origin and through an ai_gateway of `verge
// run`, alternating, and logs the medians, the 99th percentiles and their differences: what
// the gateway adds (docs/performance.md); with nginx installed, also through NGINX with
// proxy_buffering off, the reference for passing a stream on. It is a measurement, not a check, and runs only
// with VERGE_AI_BENCH=1 (VERGE_AI_BENCH_N requests each, 2000 by default).
func TestAIGatewayFirstTokenLatency(t *testing.T) {
	if os.Getenv("VERGE_AI_BENCH") != "1" {
		t.Skip("set VERGE_AI_BENCH=1 to measure")
	}
	n := 2000
	fmt.Sscan(os.Getenv("VERGE_AI_BENCH_N"), &n)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	defer origin.Close()
	p := launchVerge(t, func(p *proc) {
		writeFile(t, p.cfgFile, fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
ai:
  providers: [{name: origin, base_url: "%s/v1"}]
routes: [{name: ai, ai_gateway: {}}]
`, p.addr, p.pidFile, origin.URL))
	})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}, Timeout: 10 * time.Second}
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	ttft := func(url string) (time.Duration, error) {
		start := time.Now()
		res, err := c.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		if _, err := br.ReadString('\n'); err != nil {
			return 0, err
		}
		d := time.Since(start)
		io.Copy(io.Discard, br)
		return d, nil
	}
	gw := "http://" + p.addr + "/v1/chat/completions"
	waitFor(t, "verge run to serve", 60*time.Second, func() bool { _, err := ttft(gw); return err == nil })
	// NGINX proxying the same origin with buffering off, the peer for passing a stream on.
	ngx := ""
	if path, err := exec.LookPath("nginx"); err == nil {
		dir := t.TempDir()
		addr := freePort(t)
		conf := filepath.Join(dir, "nginx.conf")
		writeFile(t, conf, fmt.Sprintf(`worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream o { server %s; keepalive 16; }
  server { listen %s; location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection "";
    proxy_buffering off; proxy_cache off; } } }
`, dir, dir, strings.TrimPrefix(origin.URL, "http://"), addr))
		cmd := exec.Command(path, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		if err := cmd.Start(); err == nil {
			t.Cleanup(func() {
				// SIGTERM: the master stops its worker too (a SIGKILL would orphan it).
				cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
				}
			})
			ngx = "http://" + addr + "/v1/chat/completions"
			waitFor(t, "nginx to serve", 30*time.Second, func() bool { _, err := ttft(ngx); return err == nil })
		}
	}
	var direct, through, viaNginx []time.Duration
	for i := range n + 200 {
		d1, err := ttft(origin.URL + "/v1/chat/completions")
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ttft(gw)
		if err != nil {
			t.Fatal(err)
		}
		var d3 time.Duration
		if ngx != "" {
			if d3, err = ttft(ngx); err != nil {
				t.Fatal(err)
			}
		}
		if i >= 200 { // warm-up
			direct, through, viaNginx = append(direct, d1), append(through, d2), append(viaNginx, d3)
		}
	}
	slices.Sort(direct)
	slices.Sort(through)
	slices.Sort(viaNginx)
	q := func(s []time.Duration, f float64) time.Duration { return s[int(f*float64(len(s)-1))] }
	t.Logf("time to first token over %d streamed requests each:", n)
	t.Logf("  direct:  median %v  p90 %v  p99 %v", q(direct, .5), q(direct, .9), q(direct, .99))
	t.Logf("  gateway: median %v  p90 %v  p99 %v", q(through, .5), q(through, .9), q(through, .99))
	t.Logf("  added:   median %v  p90 %v  p99 %v", q(through, .5)-q(direct, .5), q(through, .9)-q(direct, .9), q(through, .99)-q(direct, .99))
	if ngx != "" {
		t.Logf("  nginx (proxy_buffering off): median %v  p90 %v  p99 %v", q(viaNginx, .5), q(viaNginx, .9), q(viaNginx, .99))
		t.Logf("  added by nginx: median %v  p90 %v  p99 %v", q(viaNginx, .5)-q(direct, .5), q(viaNginx, .9)-q(direct, .9), q(viaNginx, .99)-q(direct, .99))
	}
}
