package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	waitFor(t, "the admin API", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + adminAddr + "/metrics")
		if err == nil {
			resp.Body.Close()
		}
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

// TestRunConnectionFlood opens 20,000 connections from one address against a listener
// capping each address at 100 while another address keeps connecting: every request of the
// other address is answered, the flooding address holds at most 100 connections, and the
// rest are shed and counted.
func TestRunConnectionFlood(t *testing.T) {
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q, limits: {max_conns_per_client: 100}}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
routes: [{name: home, respond: {body: "home\n"}}]
`, p.addr, adminAddr, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, err := p.get(c, "/")
		return err == nil
	})

	const flood = 20000
	var next, served, refused atomic.Int64
	var held sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 10 * time.Second}
			for next.Add(1) <= flood {
				conn, err := d.Dial("tcp", p.addr)
				if err != nil {
					refused.Add(1)
					continue
				}
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err == nil && resp.StatusCode == 200 {
					served.Add(1)
					held.Store(conn, true) // keep it open: it holds one of the 100 places
					continue
				}
				refused.Add(1)
				conn.Close()
			}
		}()
	}
	// Meanwhile another address connects anew for each request.
	good := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}}
	goodDone := make(chan error, 1)
	go func() {
		for i := 0; next.Load() < flood; i++ {
			resp, err := good.Get("http://" + p.addr + "/")
			if err != nil {
				goodDone <- fmt.Errorf("request %d from the other address: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				goodDone <- fmt.Errorf("request %d from the other address: status %d", i, resp.StatusCode)
				return
			}
		}
		goodDone <- nil
	}()
	wg.Wait()
	if err := <-goodDone; err != nil {
		t.Fatal(err)
	}
	held.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	t.Logf("flood: %d served and held, %d refused", served.Load(), refused.Load())
	if served.Load() > 100 {
		t.Fatalf("the flooding address was served on %d connections, the cap is 100", served.Load())
	}
	if served.Load()+refused.Load() != flood {
		t.Fatalf("%d + %d connections accounted for, want %d", served.Load(), refused.Load(), flood)
	}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `verge_shed_total{listener="main",reason="conns_per_client"}`) {
		t.Errorf("/metrics lacks the shed connections")
	}
}

// TestRunListenerIPRulesFile denies addresses from a file on a listener, then edits the file:
// `verge run` follows it without a reload.
func TestRunListenerIPRulesFile(t *testing.T) {
	var denyFile string
	p := launchVerge(t, func(p *proc) {
		denyFile = filepath.Join(p.dir, "deny.txt")
		os.WriteFile(denyFile, []byte("# blocked\n127.0.0.2\n"), 0o644)
		y := fmt.Sprintf(`listeners: [{name: main, address: %q, ip_rules: {deny_files: [deny.txt]}}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
routes: [{name: home, respond: {body: "home\n"}}]
`, p.addr, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	from := func(local string) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext}}
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	waitFor(t, "verge run to serve 127.0.0.3", 60*time.Second, func() bool { return from("127.0.0.3") == nil })
	if err := from("127.0.0.2"); err == nil {
		t.Fatal("a denied address was served")
	}
	os.WriteFile(denyFile, []byte("127.0.0.3\n127.0.0.9\n"), 0o644)
	waitFor(t, "the edited deny file to take effect", 30*time.Second, func() bool { return from("127.0.0.3") != nil })
	if err := from("127.0.0.2"); err != nil {
		t.Fatalf("an address no longer denied: %v", err)
	}
}
