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

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

func startWorkerRuntime(t *testing.T, y string) string {
	t.Helper()
	dir := t.TempDir()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	kvs, err := kv.OpenSQLite(filepath.Join(dir, "kv"))
	if err != nil {
		t.Fatal(err)
	}
	dos := durable.OpenSQLite(filepath.Join(dir, "do"))
	reg := worker.NewRegistry(worker.Services{CacheDir: filepath.Join(dir, "cache"), KV: kvs, Durable: dos, Transport: tr})
	t.Cleanup(func() {
		reg.Close(context.Background())
		dos.Close()
		kvs.Close()
	})
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), Workers: reg}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return "http://" + rt.Addr("main").String()
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWorkerRoutes(t *testing.T) {
	counter := testwasm.BuildFile(t, "examples/workers/counter")
	misbehave := testwasm.BuildFile(t, "worker/testdata/misbehave")
	o := origin(t, "from origin")
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
upstreams: [{name: app, servers: [{address: %q}]}]
routes:
  - {name: counter, match: {path_prefix: /counter/}, worker: counter}
  - {name: kv, match: {path_prefix: /kv/}, worker: counter}
  - {name: fallback, match: {path_prefix: /fb/}, worker: mis, worker_on_error: origin, upstream: app}
  - {name: fail, match: {path_prefix: /fail/}, worker: mis}
workers:
  - name: counter
    module: %s
    kv: [{binding: KV}]
    durable_objects: [{binding: COUNTER, class: Counter}]
  - name: mis
    module: %s
    limits: {cpu_time: 100ms}
`, strings.TrimPrefix(o.URL, "http://"), counter, misbehave)
	base := startWorkerRuntime(t, y)
	for i := 1; i <= 3; i++ {
		if code, body := do(t, "GET", base+"/counter/x", ""); code != 200 || body != fmt.Sprint(i) {
			t.Fatalf("counter: got %d %q, want 200 %q", code, body, fmt.Sprint(i))
		}
	}
	if code, _ := do(t, "PUT", base+"/kv/a", "value"); code != 204 {
		t.Fatalf("kv put: %d", code)
	}
	if code, body := do(t, "GET", base+"/kv/a", ""); code != 200 || body != "value" {
		t.Fatalf("kv get: %d %q", code, body)
	}
	if code, _ := do(t, "GET", base+"/kv/none", ""); code != 404 {
		t.Fatalf("kv get absent: %d, want 404", code)
	}
	for _, path := range []string{"/fb/loop", "/fb/panic"} {
		if code, body := do(t, "GET", base+path, ""); code != 200 || body != "from origin" {
			t.Fatalf("%s with origin fallback: got %d %q", path, code, body)
		}
	}
	if code, _ := do(t, "GET", base+"/fail/panic", ""); code != 500 {
		t.Fatalf("panic: got %d, want 500", code)
	}
	if code, _ := do(t, "GET", base+"/fail/loop", ""); code != 503 {
		t.Fatalf("loop: got %d, want 503", code)
	}
	if code, body := do(t, "GET", base+"/fail/", ""); code != 200 || body != "ok 0" {
		t.Fatalf("after failures: got %d %q", code, body)
	}
}

// TestWorkerPackageSecretsAndReload builds a worker from its Go package at load, passes
// variables and secrets, and keeps the deployed version across a reload that changes nothing.
func TestWorkerPackageSecretsAndReload(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "token")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes: [{name: w, worker: mis}]
workers:
  - name: mis
    package: %s
    env: {GREETING: hi}
    secrets: [{name: TOKEN, file: %s}]
`, filepath.Join(testwasm.Root(), "worker", "testdata", "misbehave"), secret)
	dirData := t.TempDir()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	reg := worker.NewRegistry(worker.Services{CacheDir: filepath.Join(dirData, "cache")})
	t.Cleanup(func() { reg.Close(context.Background()) })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), Workers: reg}})
	t.Cleanup(func() { rt.Close() })
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	base := "http://" + rt.Addr("main").String()
	if code, body := do(t, "GET", base+"/env", ""); code != 200 || body != "hi,s3cret" {
		t.Fatalf("env: got %d %q", code, body)
	}
	before, _ := reg.Get("mis").Version()
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	after, _ := reg.Get("mis").Version()
	if before.ID != after.ID || !before.Deployed.Equal(after.Deployed) {
		t.Fatalf("an unchanged worker was redeployed on reload: %+v -> %+v", before, after)
	}
	if err := rt.Apply(mustConfig(t, strings.Replace(y, "GREETING: hi", "GREETING: hello", 1))); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, "GET", base+"/env", ""); code != 200 || body != "hello,s3cret" {
		t.Fatalf("env after reload: got %d %q", code, body)
	}
}
