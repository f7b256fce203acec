package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procCPU returns the CPU time (user + system) the process pid has used, from
// /proc/pid/stat (clock ticks of 10 ms).
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStatusKB returns a /proc/pid/status field in KiB (VmRSS, VmHWM).
func procStatusKB(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// htmlPage builds an HTML page of about size bytes (the htmlrewrite package's benchmark
// page: articles with links, images, lists, comments and inline scripts).
func htmlPage(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Bench</title></head><body class="list">`)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, `<article id="a%d" class="item card"><h2><a href="/items/%d" title="Item %d">Item number %d</a></h2>`+
			`<img src="/img/%d.jpg" alt="picture %d" width="320" height="200">`+
			`<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore `+
			`et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud <em>exercitation</em> ullamco laboris.</p>`+
			`<ul class="tags"><li>one</li><li>two</li><li>three</li></ul><!-- item %d -->`+
			`<script>window.items && window.items.push(%d);</script></article>`+"\n", i, i, i, i, i, i, i, i)
	}
	b.WriteString(`</body></html>`)
	return b.Bytes()
}

// BenchmarkProxyHTMLRewrite50MB measures, through `verge run`, the CPU time of the verge
// process to proxy a 50 MB HTML page unchanged ("plain" route) and rewritten by three
// html_rewrite rules ("rewrite" route), and its peak RSS. It reports cpu-ms per page for
// both and their ratio (rewrite/plain), the judged figure.
//
//	go test -run XXX -bench ProxyHTMLRewrite -benchtime 5x ./cmd/verge/
func BenchmarkProxyHTMLRewrite50MB(b *testing.B) {
	page := htmlPage(50 << 20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		w.Write(page)
	}))
	defer origin.Close()
	p := launchVergeB(b, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
upstreams: [{name: app, servers: [{address: %q}]}]
routes:
  - {name: plain, match: {path_prefix: /plain}, upstream: app}
  - name: rewrite
    match: {path_prefix: /rewrite}
    upstream: app
    html_rewrite:
      - {selector: head, append: "<script src=/x.js></script>"}
      - {selector: img, set_attribute: {loading: lazy}}
      - {selector: "a[href^='/items/']", set_attribute: {rel: nofollow}}
`, p.addr, p.pidFile, strings.TrimPrefix(origin.URL, "http://"))
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	fetch := func(path string) int64 {
		resp, err := c.Get("http://" + p.addr + path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get("http://" + p.addr + "/none")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("verge did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := p.cmd.Process.Pid
	fetch("/plain")
	fetch("/rewrite") // warm up both paths
	var plain, rewrite time.Duration
	b.SetBytes(int64(len(page)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0 := procCPU(b, pid)
		fetch("/plain")
		c1 := procCPU(b, pid)
		if n := fetch("/rewrite"); n <= int64(len(page)) {
			b.Fatalf("rewritten page of %d bytes, no longer than the original", n)
		}
		c2 := procCPU(b, pid)
		plain += c1 - c0
		rewrite += c2 - c1
	}
	b.StopTimer()
	b.ReportMetric(float64(plain.Milliseconds())/float64(b.N), "plain-cpu-ms/page")
	b.ReportMetric(float64(rewrite.Milliseconds())/float64(b.N), "rewrite-cpu-ms/page")
	if plain > 0 {
		b.ReportMetric(float64(rewrite)/float64(plain), "rewrite/plain")
	}
	b.ReportMetric(float64(procStatusKB(pid, "VmHWM"))/1024, "peak-rss-MB")
}

// launchVergeB starts `verge run` for a benchmark (launchVerge is for tests).
func launchVergeB(b *testing.B, write func(p *proc)) *proc {
	b.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "verge-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "verge")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	dir := b.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &proc{dir: dir, cfgFile: filepath.Join(dir, "verge.yaml"), pidFile: filepath.Join(dir, "verge.pid"), addr: addr, exited: make(chan error, 1)}
	write(p)
	p.cmd = exec.Command(binPath, "run", "-c", p.cfgFile)
	if f := os.Getenv("VERGE_BENCH_CPUPROFILE"); f != "" {
		// A profile of the verge process: VERGE_BENCH_CPUPROFILE=path, for
		// VERGE_CPUPROFILE_SECONDS (profile.go).
		p.cmd.Env = append(os.Environ(), "VERGE_CPUPROFILE="+f)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	b.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
		}
	})
	return p
}
