package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestRunWorkerCannotReachAdminOrLoopback attacks as reported, through the verge binary: a
// worker fetches the admin API's GET /config on loopback and its own listener. Both are
// refused with a clear error and the admin API keeps its configuration; the worker's
// fetch.allow opens a loopback origin but never the admin API.
func TestRunWorkerCannotReachAdminOrLoopback(t *testing.T) {
	module := testwasm.BuildFile(t, "worker/testdata/misbehave")
	origin := testOrigin(t, "origin body")
	adminAddr := freePort(t)
	write := func(p *proc, allow string) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
routes: [{name: w, worker: app}]
workers:
  - name: app
    module: %q
    limits: {cpu_time: 1s}
    fetch: {allow: [%s]}
`, p.addr, adminAddr, p.pidFile, module, allow)
		if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := launchVerge(t, func(p *proc) { write(p, "") })
	listen := p.addr
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(u string) (int, string) {
		resp, err := c.Get(u)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	viaWorker := func(target string) (int, string) {
		return get("http://" + listen + "/fetch?u=" + url.QueryEscape(target))
	}
	waitFor(t, "verge run to serve", 30*time.Second, func() bool { code, _ := get("http://" + listen + "/"); return code == 200 })
	// The admin API starts after the first config is applied (and the cron scheduler started).
	waitFor(t, "the admin API", 30*time.Second, func() bool { code, _ := get("http://" + adminAddr + "/config"); return code == 200 })
	_, before := get("http://" + adminAddr + "/config")
	refused := func(target string) {
		t.Helper()
		if code, body := viaWorker(target); code != 502 || !strings.Contains(body, "refused") {
			t.Fatalf("worker fetch %s: got %d %q, want 502 refused", target, code, body)
		}
	}
	refused("http://" + adminAddr + "/config")
	refused("http://localhost:" + strings.Split(adminAddr, ":")[1] + "/config")
	refused("http://" + listen + "/")
	refused("http://" + origin + "/")

	// Reload with the origin allowed: the origin answers, the admin API still refuses.
	write(p, `"127.0.0.1/32"`)
	resp, err := c.Post("http://"+adminAddr+"/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, rb)
	}
	waitFor(t, "the reload to allow the origin", 30*time.Second, func() bool {
		code, body := viaWorker("http://" + origin + "/")
		return code == 200 && body == "origin body"
	})
	refused("http://" + adminAddr + "/config")
	refused("http://" + listen + "/")
	if _, after := get("http://" + adminAddr + "/config"); after == "" || !strings.Contains(after, "fetch") || before == "" {
		t.Fatalf("admin config before %q, after %q", before, after)
	}
}
