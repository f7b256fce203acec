package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// gateModules is a WorkerModules that holds every deploy until released: the test decides
// when a worker's "compilation" ends.
type gateModules struct {
	entered chan string
	release chan struct{}
	module  []byte // nil: the configured module
}

func (g *gateModules) WorkerModule(name string, configured []byte) []byte {
	g.entered <- name
	<-g.release
	if g.module != nil {
		return g.module
	}
	return configured
}

func newDeployRuntime(t *testing.T, mods WorkerModules, early bool) (*Runtime, *worker.Registry) {
	t.Helper()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	reg := worker.NewRegistry(worker.Services{CacheDir: filepath.Join(t.TempDir(), "cache"), Transport: tr})
	t.Cleanup(func() { reg.Close(context.Background()) })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), Workers: reg, WorkerModules: mods}, StartBeforeWorkers: early})
	t.Cleanup(func() { rt.Close() })
	return rt, reg
}

func deployConfig(workers ...string) string {
	y := `listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - {name: plain, match: {path: /plain}, respond: {status: 200, body: "plain"}}
`
	for i := 0; i < len(workers); i += 2 {
		y += fmt.Sprintf("  - {name: r%s, match: {path_prefix: /%s/}, worker: %s}\n", workers[i], workers[i], workers[i])
	}
	y += "workers:\n"
	for i := 0; i < len(workers); i += 2 {
		y += fmt.Sprintf("  - {name: %s, module: %q}\n", workers[i], workers[i+1])
	}
	return y
}

// TestStartBeforeWorkers: the first configuration serves while its worker compiles; a
// request for the worker waits for it and is answered once it is deployed.
func TestStartBeforeWorkers(t *testing.T) {
	hello := testwasm.BuildFile(t, "examples/workers/hello")
	gate := &gateModules{entered: make(chan string, 1), release: make(chan struct{})}
	rt, _ := newDeployRuntime(t, gate, true)
	applied := make(chan error, 1)
	go func() { applied <- rt.Apply(mustConfig(t, deployConfig("app", hello))) }()
	<-gate.entered // the worker is being deployed: the listener is up
	base := "http://" + rt.Addr("main").String()
	if code, body := do(t, "GET", base+"/plain", ""); code != 200 || body != "plain" {
		t.Fatalf("a route without a worker while the worker deploys: %d %q", code, body)
	}
	type answer struct {
		code int
		body string
		err  error
	}
	waiting := make(chan answer, 1)
	go func() {
		// Compiling may take long on a busy machine (or under -race): a guard, not a limit.
		resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(base + "/app/x")
		if err != nil {
			waiting <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		waiting <- answer{resp.StatusCode, string(b), err}
	}()
	close(gate.release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if a := <-waiting; a.err != nil || a.code != 200 || a.body != "hello from /app/x\n" {
		t.Fatalf("request that waited for the worker: %d %q %v", a.code, a.body, a.err)
	}
}

// TestStartBeforeWorkersFailure: a worker that does not deploy fails Apply, and its routes
// answer 503 instead of waiting.
func TestStartBeforeWorkersFailure(t *testing.T) {
	hello := testwasm.BuildFile(t, "examples/workers/hello")
	gate := &gateModules{entered: make(chan string, 1), release: make(chan struct{}), module: []byte("\x00asm\x01\x00\x00\x00")}
	rt, reg := newDeployRuntime(t, gate, true)
	applied := make(chan error, 1)
	go func() { applied <- rt.Apply(mustConfig(t, deployConfig("app", hello))) }()
	<-gate.entered
	close(gate.release)
	err := <-applied
	if err == nil || !strings.Contains(err.Error(), "verge_handle") {
		t.Fatalf("Apply: %v, want the deploy's error", err)
	}
	base := "http://" + rt.Addr("main").String()
	if code, body := do(t, "GET", base+"/app/x", ""); code != 503 {
		t.Fatalf("route of the failed worker: %d %q, want 503", code, body)
	}
	if reg.Get("app") != nil {
		t.Fatal("the failed worker is still registered")
	}
}

// TestReloadSwitchesWorkersTogether: a reload whose second worker does not compile leaves the
// first one on its old version too (all or nothing), and the old config serves.
func TestReloadSwitchesWorkersTogether(t *testing.T) {
	hello := testwasm.BuildFile(t, "examples/workers/hello")
	counter := testwasm.BuildFile(t, "examples/workers/counter")
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, reg := newDeployRuntime(t, nil, false)
	if err := rt.Apply(mustConfig(t, deployConfig("a", hello, "b", hello))); err != nil {
		t.Fatal(err)
	}
	before, _ := reg.Get("a").Version()
	if err := rt.Apply(mustConfig(t, deployConfig("a", counter, "b", bad))); err == nil {
		t.Fatal("reload with a module that does not compile succeeded")
	}
	if after, _ := reg.Get("a").Version(); after.ID != before.ID {
		t.Fatalf("worker a switched to %s although the reload failed (was %s)", after.ID, before.ID)
	}
	base := "http://" + rt.Addr("main").String()
	if code, body := do(t, "GET", base+"/a/x", ""); code != 200 || body != "hello from /a/x\n" {
		t.Fatalf("after the refused reload: %d %q", code, body)
	}
	// A good reload switches both.
	if err := rt.Apply(mustConfig(t, deployConfig("a", counter, "b", counter))); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if v, _ := reg.Get(n).Version(); v.ID == before.ID {
			t.Errorf("worker %s still runs %s after the reload", n, v.ID)
		}
	}
}
