package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// checkInterleave drives examples/workers/waits at addr: request 1 to an object waits in a
// subrequest to a loopback origin that answers only when the test says so; request 2 to
// the same object runs and completes meanwhile, seeing request 1's write made before its
// wait; request 1 then completes with its own results, seeing request 2's write.
func checkInterleave(t *testing.T, addr string, logs fmt.Stringer) {
	t.Helper()
	arrived := make(chan struct{}, 4)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("ok"))
	}))
	defer origin.Close()
	defer open()
	c := &http.Client{Timeout: 60 * time.Second}
	type result struct {
		code int
		body string
		err  error
	}
	r1 := make(chan result, 1)
	go func() {
		code, body, err := doRequest(c, addr, "GET", "/obj/wait?name=r1&u="+url.QueryEscape(origin.URL+"/held"), "")
		r1 <- result{code, body, err}
	}()
	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatalf("request 1's subrequest never reached the origin\n%s", logs)
	}
	code, body, err := doRequest(c, addr, "GET", "/obj/quick?name=r2&of=r1", "")
	if err != nil || code != 200 || body != "r2 before=1" {
		t.Fatalf("request 2 while request 1 waits: %d %q %v, want 200 %q\n%s", code, body, err, "r2 before=1", logs)
	}
	select {
	case r := <-r1:
		t.Fatalf("request 1 finished before its subrequest was answered: %+v", r)
	default:
	}
	open()
	select {
	case r := <-r1:
		if r.err != nil || r.code != 200 || r.body != "r1 origin=ok quick=r2 path=/wait" {
			t.Fatalf("request 1: %d %q %v\n%s", r.code, r.body, r.err, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("request 1 did not finish\n%s", logs)
	}
}

func TestDevInterleave(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "examples", "workers", "waits"))
	checkInterleave(t, p.addr, p.stderr)
}

// TestRunInterleave runs the waits example through `verge run` with a worker route.
func TestRunInterleave(t *testing.T) {
	module := testwasm.BuildFile(t, "examples/workers/waits")
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
access_log: {output: "off"}
pid_file: %q
routes: [{name: waits, worker: waits}]
workers:
  - name: waits
    module: %q
    durable_objects: [{binding: ROOM, class: Room}]
    fetch: {allow: ["127.0.0.1"]}
`, p.addr, p.pidFile, module)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		resp, err := c.Get("http://" + p.addr + "/probe/log")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	checkInterleave(t, p.addr, p.stderr)
}
