package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/verge-edge/verge/internal/testwasm"
)

// chromiumPath finds the headless browser .ci/run installs.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing: .ci/run installs it")
	}
	t.Skip("no chromium on this machine (.ci/run installs it)")
	return ""
}

// countingBackend answers 200 with its name and counts the requests it got.
func countingBackend(t *testing.T, name string, hits *atomic.Int64) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Content-Length", fmt.Sprint(len(name)))
		w.Write([]byte(name))
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// xssKey and xssValue would run script if the dashboard put them in the page as HTML.
const (
	xssKey   = `<img src=x onerror="window.__xss='key'">`
	xssValue = `<script>window.__xss='value'</script><img src=x onerror="window.__xss='value'">`
)

// TestDashboardInChromium drives the dashboard of a running `verge run` in headless
// Chromium: every page loads, the overview's live values move under load, a drain clicked
// on the upstreams page stops traffic to that server with no failed request, KV keys and
// values that hold markup show as text, the config page shows a validation error in place,
// and screenshots of every page at desktop and phone width are saved
// ($VERGE_DASHBOARD_SCREENSHOTS, else a temporary directory; the path is logged).
func TestDashboardInChromium(t *testing.T) {
	browser := chromiumPath(t)
	module := testwasm.BuildFile(t, "examples/workers/hello")
	other := testwasm.BuildFile(t, "examples/workers/stream") // deployed from the page
	const token = "dashboard-test-token-0123456789"
	var hitsA, hitsB atomic.Int64
	backA, backB := countingBackend(t, "a", &hitsA), countingBackend(t, "b", &hitsB)
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
routes:
  - {name: cached, match: {host: c.test}, upstream: web, cache: {}}
  - {name: hello, match: {path: /hello}, worker: hello}
  - {name: app, upstream: web}
upstreams:
  - name: web
    servers: [{address: %q}, {address: %q}]
workers:
  - name: hello
    module: %q
    kv: [{binding: STORE, namespace: notes}]
cache: {memory_size: 64MiB}
worker_data: %q
admin: {address: %s, token: %q}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 2s}
`, p.addr, backA, backB, module, filepath.Join(p.dir, "data"), adminAddr, token, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	base := "http://" + adminAddr
	c := &http.Client{Timeout: 10 * time.Second}
	apiDo := func(method, path, ctype, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "verge to serve", 60*time.Second, func() bool {
		req, _ := http.NewRequest("GET", base+"/workers", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if code, body := apiDo("PUT", "/kv/notes/value?key="+url.QueryEscape(xssKey), "application/json",
		fmt.Sprintf(`{"value": %q, "metadata": {"note": %q}}`, xssValue, xssKey)); code != 200 {
		t.Fatalf("KV put: %d %s", code, body)
	}

	shots := os.Getenv("VERGE_DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshots in %s", shots)

	// Load: wrk-like clients on the proxied route (every response must be complete), and
	// one client on the cached route for the cache page.
	load := startRawLoad(t, p.addr, 4)
	stopCached := make(chan struct{})
	cachedDone := make(chan struct{})
	var cachedRounds atomic.Int64 // rounds of the cached-route client
	go func() {
		defer close(cachedDone)
		for i := 0; i < 100000; i++ {
			if i > 0 {
				cachedRounds.Add(1)
			}
			select {
			case <-stopCached:
				return
			default:
			}
			req, _ := http.NewRequest("GET", "http://"+p.addr+fmt.Sprintf("/s%d", i%10), nil)
			req.Host = "c.test"
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
			if resp, err := c.Get("http://" + p.addr + "/hello"); err == nil {
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() { close(stopCached); <-cachedDone })
	load.await(t, 200)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	// A failure guard: the test takes 40 to 90 s, the latter on a shared 2-core machine
	// running other tests.
	ctx, cancelTimeout := context.WithTimeout(bctx, 8*time.Minute)
	defer cancelTimeout()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	// waitJS polls a JavaScript condition in the page (a failure guard bounds it).
	waitJS := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")")); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%s)", what, cond)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	shoot := func(name string) {
		t.Helper()
		for _, v := range []struct {
			suffix string
			w, h   int64
		}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
			run("viewport "+v.suffix, chromedp.EmulateViewport(v.w, v.h))
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatalf("screenshot %s: %v", name, err)
			}
			if err := os.WriteFile(filepath.Join(shots, name+"-"+v.suffix+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		run("viewport", chromedp.EmulateViewport(1280, 900))
	}
	visit := func(page string) {
		t.Helper()
		run("open "+page, chromedp.Navigate(base+"/dashboard/#"+page), chromedp.WaitVisible(chromedp.CSS("#view h1")))
	}

	// The admin API has a token: the page asks for it once.
	visit("overview")
	run("sign in", chromedp.WaitVisible(chromedp.CSS("#login-token")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitNotVisible(chromedp.CSS("#login")))
	// The page's confirmations are answered yes (a dialog would block the test).
	eval(`window.confirm = () => true, ""`)

	// Overview: live values arrive and change.
	waitJS("live stream", `document.getElementById("live").textContent === "live"`)
	waitJS("requests per second on the overview", `parseFloat(document.getElementById("t-req").textContent) > 0`)
	// Logged, not asserted (no timing assertions on a shared machine): the page's own
	// navigation timing, from the request to the load event.
	t.Logf("overview loaded in %s ms", eval(`String(Math.round(performance.getEntriesByType("navigation")[0].loadEventEnd))`))
	seq := eval(`String(state.seq)`)
	waitJS("new points", `state.seq >= `+seq+` + 2`)
	waitJS("a route row", `[...document.querySelectorAll("#view th[scope=row]")].some(e => e.textContent === "app")`)
	waitJS("a listener row", `[...document.querySelectorAll("#view th[scope=row]")].some(e => e.textContent === "main")`)
	if got := eval(`document.getElementById("t-req").textContent`); got == "–" || got == "0" {
		t.Errorf("requests per second shown as %q under load", got)
	}
	shoot("overview")

	// Upstreams: drain b from the page while the load runs.
	visit("upstreams")
	drainSel := fmt.Sprintf(`button[aria-label="Drain %s in web"]`, backB)
	run("wait for the drain button", chromedp.WaitVisible(chromedp.CSS(drainSel)))
	waitJS("traffic on b", fmt.Sprintf(`state.points.length && (state.points[state.points.length-1].upstreams||{})["web %s"]`, backB))
	shoot("upstreams")
	run("click drain", chromedp.Click(chromedp.CSS(drainSel)))
	run("wait for draining", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`button[aria-label="Undrain %s in web"]`, backB))))
	// Every request sent before the drain has been answered once each load client has read
	// a response more, and the cached route's client has finished a round (a cache miss goes
	// to web too).
	rounds := cachedRounds.Load()
	load.awaitEach(t, 1)
	waitFor(t, "a round of the cached-route client", 60*time.Second, func() bool { return cachedRounds.Load() > rounds })
	before := hitsB.Load()
	aBefore := hitsA.Load()
	load.await(t, 400)
	if got := hitsB.Load(); got != before {
		t.Errorf("drained server b got %d requests after the drain", got-before)
	}
	if hitsA.Load()-aBefore < 400-4 { // 4 clients: a request counted before the snapshot may answer after it
		t.Errorf("server a got %d of 400 requests after b was drained", hitsA.Load()-aBefore)
	}
	if errs := load.errors(); len(errs) > 0 {
		t.Fatalf("failed requests during the drain: %v", errs)
	}
	// A cross-site POST (a form on another site) cannot undrain it.
	if code, body := apiDo("POST", "/upstreams/web/"+url.PathEscape(backB)+"/undrain", "text/plain", "{}"); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain undrain: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", base+"/upstreams/web/"+url.PathEscape(backB)+"/undrain", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin undrain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The page's rate for b (an average of the last 5 seconds) falls to nothing.
	waitJS("no traffic shown for the drained server", fmt.Sprintf(`(() => {
		const row = [...document.querySelectorAll("#view tr")].find(r => r.querySelector("th") && r.querySelector("th").textContent === %q);
		const v = row && row.querySelectorAll("td")[3].textContent;
		return v === "0" || v === "–"; })()`, backB))
	shoot("upstreams-drained")
	// Undrain with the keyboard: focus the button, press Enter; b takes traffic again.
	undrainSel := fmt.Sprintf(`button[aria-label="Undrain %s in web"]`, backB)
	run("undrain with the keyboard", chromedp.Focus(chromedp.CSS(undrainSel)), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(drainSel)))
	drained := hitsB.Load()
	load.await(t, 400)
	if hitsB.Load() == drained {
		t.Errorf("server b got no request after the undrain")
	}

	// Cache, workers, cluster (hidden: no cluster).
	visit("cache")
	waitJS("hit ratio", `document.getElementById("c-hit").textContent.includes("%")`)
	waitJS("top keys", `[...document.querySelectorAll("#view th[scope=row]")].some(e => e.textContent.startsWith("http://c.test/s"))`)
	shoot("cache")
	visit("workers")
	run("worker row", chromedp.WaitVisible(chromedp.CSS(`#rollback-hello`)))
	waitJS("worker invocations", `(state.points[state.points.length-1].workers||{}).hello`)
	shoot("workers")
	workerVersion := func() string {
		_, body := apiDo("GET", "/workers", "", "")
		_, v, _ := strings.Cut(body, `"version":"`)
		v, _, _ = strings.Cut(v, `"`)
		return v
	}
	configured := workerVersion()
	run("deploy from the page", chromedp.SetUploadFiles(chromedp.CSS("#wasm-hello"), []string{other}),
		chromedp.Click(chromedp.CSS("#deploy-hello")))
	waitJS("deployed", `document.querySelector("#view .msg").textContent.startsWith("Deployed hello version ")`)
	if v := workerVersion(); v == configured || v == "" {
		t.Fatalf("after a deploy from the page the version is %q (configured %q)", v, configured)
	}
	if resp, err := c.Get("http://" + p.addr + "/hello"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.HasPrefix(string(b), "hello from") {
			t.Errorf("the deployed module does not answer: %q", b)
		}
	}
	run("roll back from the page", chromedp.Click(chromedp.CSS("#rollback-hello")))
	waitJS("rolled back", `document.querySelector("#view .msg").textContent === "Rolled hello back to version `+configured+`."`)
	if v := workerVersion(); v != configured {
		t.Fatalf("after a rollback from the page the version is %q, want %q", v, configured)
	}
	if hidden := eval(`String(document.getElementById("nav-cluster").hidden)`); hidden != "true" {
		t.Errorf("cluster link shown without a cluster")
	}

	// KV: markup in keys and values stays text.
	visit("kv")
	waitJS("the key list", `[...document.querySelectorAll(".keys button")].some(b => b.textContent === `+jsString(xssKey)+`)`)
	eval(`[...document.querySelectorAll(".keys button")].find(b => b.textContent === ` + jsString(xssKey) + `).click(), ""`)
	waitJS("the value", `document.getElementById("kv-value") && document.getElementById("kv-value").value === `+jsString(xssValue))
	if x := eval(`String(window.__xss)`); x != "undefined" {
		t.Errorf("script from a KV %s ran in the dashboard", x)
	}
	if n := eval(`String(document.querySelectorAll("#view img, #view script").length)`); n != "0" {
		t.Errorf("%s elements made from KV data", n)
	}
	shoot("kv")

	// Config: an error is shown at its line.
	visit("config")
	waitJS("the config", `document.getElementById("config-text").value.includes("listeners:")`)
	eval(`(() => { const t = document.getElementById("config-text");
		t.value = t.value.replace("upstreams:", "upstreams:\n  - name: web2\n    bogus: 1"); return ""; })()`)
	run("validate", chromedp.Click(chromedp.CSS("#config-validate")))
	waitJS("an error in place", `document.querySelector("#config-lines .errmsg") && document.querySelector("#config-lines .errline")`)
	want := eval(`String(document.getElementById("config-text").value.split("\n").findIndex(l => l.includes("bogus: 1")) + 1)`)
	if n := eval(`document.querySelector("#config-lines .errline").dataset.n`); n != want {
		t.Errorf("error shown at line %s, want %s (bogus: 1)", n, want)
	}
	shoot("config")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string { return fmt.Sprintf("%q", s) }

// TestDashboardExampleValidates: `verge validate` accepts examples/dashboard.yaml and
// refuses a dashboard setting that is not a boolean, naming the field.
func TestDashboardExampleValidates(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"validate", "-c", "../../examples/dashboard.yaml"}, &stdout, &stderr); code != 0 || stdout.String() != "ok\n" {
		t.Fatalf("validate examples/dashboard.yaml: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listeners: [{address: \"127.0.0.1:0\"}]\nroutes: [{respond: {body: x}}]\nadmin: {dashboard: maybe}\n"), 0o644)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"validate", "-c", bad}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "bad.yaml:3:") || !strings.Contains(stderr.String(), "dashboard") {
		t.Errorf("dashboard: maybe: code %d, stderr %q", code, stderr.String())
	}
}

// TestDashboardDisabledThroughBinary: admin.dashboard false leaves the JSON API and serves no
// pages; a reload that turns it on serves them.
func TestDashboardDisabledThroughBinary(t *testing.T) {
	adminAddr := freePort(t)
	write := func(p *proc, on bool) {
		os.WriteFile(p.cfgFile, []byte(adminConfig(p.addr, p.pidFile, "up", fmt.Sprintf("admin: {address: %s, dashboard: %v}\n", adminAddr, on))), 0o644)
	}
	p := launchVerge(t, func(p *proc) { write(p, false) })
	c := &http.Client{Timeout: 5 * time.Second}
	status := func(path string) int {
		resp, err := c.Get("http://" + adminAddr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "the admin API", 20*time.Second, func() bool { return status("/readyz") == 200 })
	if code := status("/dashboard/"); code != 404 {
		t.Fatalf("dashboard off: GET /dashboard/ = %d", code)
	}
	if code := status("/stats"); code != 200 {
		t.Fatalf("dashboard off: GET /stats = %d (the JSON API stays)", code)
	}
	write(p, true)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the dashboard after a reload", 20*time.Second, func() bool { return status("/dashboard/") == 200 })
}

// TestDashboardClusterPage: on a node of a (one-node, embedded) cluster the Cluster link
// shows and the page lists this node among the members.
func TestDashboardClusterPage(t *testing.T) {
	browser := chromiumPath(t)
	adminAddr, natsAddr := freePort(t), freePort(t)
	launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
routes: [{name: r, respond: {body: "up"}}]
cluster:
  node: solo
  embedded: {listen: %q}
worker_data: %q
admin: {address: %s}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 2s}
`, p.addr, natsAddr, filepath.Join(p.dir, "data"), adminAddr, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "the cluster status", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + adminAddr + "/cluster")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200 && strings.Contains(string(b), `"node":"solo"`)
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(bctx, 5*time.Minute) // a failure guard
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+adminAddr+"/dashboard/#overview"),
		chromedp.WaitVisible(chromedp.CSS("#nav-cluster a")), chromedp.Click(chromedp.CSS("#nav-cluster a")),
		chromedp.WaitVisible(chromedp.CSS("#view table"))); err != nil {
		t.Fatalf("cluster page: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll("#view td")].some(e => e.textContent === "solo")`))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster page does not list node solo")
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if shots := os.Getenv("VERGE_DASHBOARD_SCREENSHOTS"); shots != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(shots, "cluster-desktop.png"), png, 0o644)
	}
}
