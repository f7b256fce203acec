package worker_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// cacheDir is the compilation cache shared by the tests of this binary.
var cacheDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "verge-worker-cache")
	if err != nil {
		panic(err)
	}
	cacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// recorder is a ResponseWriter that keeps the response.
type recorder struct {
	status   int
	header   message.Header
	length   int64
	body     bytes.Buffer
	finished bool
}

func (r *recorder) WriteHeader(resp *message.Response) error {
	r.status, r.header, r.length = resp.Status, resp.Header.Clone(), resp.ContentLength
	return nil
}
func (r *recorder) Write(p []byte) (int, error)  { return r.body.Write(p) }
func (r *recorder) Finish(*message.Header) error { r.finished = true; return nil }
func (r *recorder) String() string               { return strconv.Itoa(r.status) + " " + r.body.String() }
func (r *recorder) check(t testing.TB, status int, body string) {
	t.Helper()
	if r.status != status || r.body.String() != body || !r.finished {
		t.Fatalf("got %d %q (finished %v), want %d %q", r.status, r.body.String(), r.finished, status, body)
	}
}

type env struct {
	reg *worker.Registry
	kv  *kv.SQLiteStore
	do  *durable.SQLiteStore
}

func newEnv(t testing.TB, dir string, svc worker.Services) *env {
	t.Helper()
	kvs, err := kv.OpenSQLite(filepath.Join(dir, "kv"))
	if err != nil {
		t.Fatal(err)
	}
	dos := durable.OpenSQLite(filepath.Join(dir, "do"))
	svc.CacheDir, svc.KV, svc.Durable = cacheDir, kvs, dos
	e := &env{reg: worker.NewRegistry(svc), kv: kvs, do: dos}
	t.Cleanup(func() {
		e.reg.Close(context.Background())
		dos.Close()
		kvs.Close()
	})
	return e
}

func (e *env) deploy(t testing.TB, cfg worker.Config) *worker.Worker {
	t.Helper()
	if _, err := e.reg.Deploy(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return e.reg.Get(cfg.Name)
}

func counterConfig(t testing.TB) worker.Config {
	return worker.Config{
		Name:    "counter",
		Module:  testwasm.Build(t, "examples/workers/counter"),
		KV:      map[string]string{"KV": "counter-kv"},
		Durable: map[string]worker.DurableBinding{"COUNTER": {Class: "Counter"}},
		// Generous: these tests run beside wasm compiles on a busy machine; the CPU limit
		// itself is tested with the misbehave worker.
		Limits: worker.Limits{CPUTime: time.Second},
	}
}

func serve(t testing.TB, w *worker.Worker, method, target, body string) (*recorder, error) {
	t.Helper()
	req := &message.Request{Method: method, Target: target, Authority: "example.com", Proto: message.HTTP11}
	if body != "" {
		req.Body = strings.NewReader(body)
		req.ContentLength = int64(len(body))
	}
	rec := &recorder{}
	_, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"})
	return rec, err
}

func TestCounterConcurrentIncrementsExactlyOnce(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, counterConfig(t))
	const workers, each = 8, 25
	seen := make([]int, workers*each+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				rec, err := serve(t, w, "GET", "/counter/a", "")
				if err != nil || rec.status != 200 {
					t.Errorf("increment: %v %v", rec, err)
					return
				}
				n, err := strconv.Atoi(rec.body.String())
				if err != nil || n < 1 || n > workers*each {
					t.Errorf("increment answered %q", rec.body.String())
					return
				}
				mu.Lock()
				seen[n]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for n := 1; n <= workers*each; n++ {
		if seen[n] != 1 {
			t.Fatalf("value %d answered %d times, want exactly once", n, seen[n])
		}
	}
	rec, _ := serve(t, w, "GET", "/counter/a", "")
	rec.check(t, 200, strconv.Itoa(workers*each+1))
	rec, _ = serve(t, w, "GET", "/counter/b", "")
	rec.check(t, 200, "1")
}

func TestCounterKV(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, counterConfig(t))
	rec, err := serve(t, w, "PUT", "/kv/greeting", "hello world")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 204, "")
	rec, _ = serve(t, w, "GET", "/kv/greeting", "")
	rec.check(t, 200, "hello world")
	if rec.length != int64(len("hello world")) {
		t.Fatalf("content length %d, want %d", rec.length, len("hello world"))
	}
	rec, _ = serve(t, w, "GET", "/kv/absent", "")
	if rec.status != 404 {
		t.Fatalf("absent key: got %d, want 404", rec.status)
	}
	ns, _ := e.kv.Namespace(context.Background(), "counter-kv")
	if ent, _ := ns.Get(context.Background(), "greeting"); ent == nil || string(ent.Value) != "hello world" {
		t.Fatalf("stored value: got %+v", ent)
	}
}

func misbehaveConfig(t testing.TB, l worker.Limits) worker.Config {
	return worker.Config{
		Name:   "misbehave",
		Module: testwasm.Build(t, "worker/testdata/misbehave"),
		KV:     map[string]string{"KV": "mis"},
		Env:    map[string]string{"GREETING": "hi", "TOKEN": "s3cret"},
		Limits: l,
	}
}

func TestFailuresDiscardInstanceAndNextRequestSucceeds(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: 100 * time.Millisecond, WallTime: 2 * time.Second, Memory: 64 << 20}))
	cases := []struct {
		path string
		kind worker.ErrorKind
		max  time.Duration
	}{
		{"/loop", worker.CPULimit, time.Second},
		{"/panic", worker.Crashed, time.Second},
		{"/oom", worker.Crashed, 5 * time.Second},
		{"/exit", worker.Crashed, time.Second},
	}
	for _, c := range cases {
		start := time.Now()
		rec, err := serve(t, w, "GET", c.path, "")
		took := time.Since(start)
		var we *worker.Error
		if !errors.As(err, &we) || we.Kind != c.kind || we.Responded {
			t.Fatalf("%s: got %v (response %v), want a %v error before any response", c.path, err, rec, c.kind)
		}
		if took > c.max {
			t.Errorf("%s: stopped after %v, want under %v", c.path, took, c.max)
		}
		if c.kind == worker.CPULimit && took < 100*time.Millisecond {
			t.Errorf("%s: stopped after %v, before the 100ms CPU limit", c.path, took)
		}
		t.Logf("%s: %v after %v", c.path, err, took)
		rec, err = serve(t, w, "GET", "/", "")
		if err != nil {
			t.Fatalf("request after %s: %v", c.path, err)
		}
		rec.check(t, 200, "ok 0")
	}
}

func TestWallTimeLimit(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{WallTime: 300 * time.Millisecond}))
	start := time.Now()
	_, err := serve(t, w, "GET", "/sleep", "")
	var we *worker.Error
	if !errors.As(err, &we) || we.Kind != worker.WallLimit || we.StatusCode() != 503 {
		t.Fatalf("got %v, want a wall time error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stopped after %v", took)
	}
	rec, err := serve(t, w, "GET", "/", "")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 200, "ok 0")
}

func TestEnvAndWaitUntil(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{}))
	rec, _ := serve(t, w, "GET", "/env", "")
	rec.check(t, 200, "hi,s3cret")
	rec, _ = serve(t, w, "GET", "/waituntil", "")
	rec.check(t, 200, "early")
	ns, _ := e.kv.Namespace(context.Background(), "mis")
	if ent, _ := ns.Get(context.Background(), "late"); ent == nil || string(ent.Value) != "done" {
		t.Fatalf("waitUntil work: got %+v, want the key written", ent)
	}
}

func TestDeployWithoutFailingInFlight(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	cfg := counterConfig(t)
	cfg.Limits.CPUTime = 2 * time.Second // the machine is busy compiling during this test
	w := e.deploy(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failures, served int
	var mu sync.Mutex
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 200; i++ {
				rec, err := serve(t, w, "PUT", "/kv/k", "v")
				mu.Lock()
				served++
				// 204 from the counter versions, 200 from the hello ones.
				if err != nil || rec.status != 204 && rec.status != 200 {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	hello := worker.Config{Name: "counter", Module: testwasm.Build(t, "examples/workers/hello")}
	for i := range 4 {
		cfg := counterConfig(t)
		if i%2 == 0 {
			cfg = hello
		}
		cfg.Limits.CPUTime = 2 * time.Second
		info, err := e.reg.Deploy(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("deploy %d: version %s compile %v instantiate %v", i, info.ID, info.Compile, info.Instantiate)
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if failures != 0 {
		t.Fatalf("%d of %d requests failed during deploys", failures, served)
	}
	rec, _ := serve(t, w, "GET", "/anything", "") // the counter version is current
	rec.check(t, 404, "not found\n")
}

func TestUnknownModule(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	if _, err := e.reg.Deploy(context.Background(), worker.Config{Name: "x", Module: []byte("\x00asm\x01\x00\x00\x00")}); err == nil {
		t.Fatal("deploying a module without verge_handle succeeded")
	}
	if e.reg.Get("x") != nil {
		t.Fatal("failed first deploy left a worker behind")
	}
}

// TestHeadOfStreamedResponse: HEAD answers with the framing GET would have. A streamed
// response (head sent before the body ends) has no known length for GET, so HEAD must not
// claim Content-Length: 0; a buffered one has its length for both.
func TestHeadOfStreamedResponse(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{}))
	for _, c := range []struct {
		path   string
		length int64
	}{{"/stream", -1}, {"/", int64(len("ok 0"))}} {
		get, err := serve(t, w, "GET", c.path, "")
		if err != nil {
			t.Fatal(err)
		}
		head, err := serve(t, w, "HEAD", c.path, "")
		if err != nil {
			t.Fatal(err)
		}
		if get.length != c.length || head.length != get.length {
			t.Errorf("%s: GET length %d, HEAD length %d; want both %d", c.path, get.length, head.length, c.length)
		}
		if head.status != get.status || head.header.Get("Content-Type") != get.header.Get("Content-Type") {
			t.Errorf("%s: HEAD %d %q, GET %d %q", c.path, head.status, head.header.Get("Content-Type"), get.status, get.header.Get("Content-Type"))
		}
		if head.body.Len() != 0 || !head.finished {
			t.Errorf("%s: HEAD body %d bytes (finished %v), want none", c.path, head.body.Len(), head.finished)
		}
	}
}

// TestKVListInvalidCursor: a worker listing with a cursor KV did not make gets an error,
// not an empty and complete listing.
func TestKVListInvalidCursor(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, misbehaveConfig(t, worker.Limits{CPUTime: time.Second}))
	rec, err := serve(t, w, "GET", "/kvlist?cursor=zzzz", "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.status != 400 || !strings.Contains(rec.body.String(), "invalid cursor") {
		t.Fatalf("list with a bad cursor: got %s, want 400 and the error", rec)
	}
	rec, _ = serve(t, w, "GET", "/kvlist", "")
	rec.check(t, 200, "keys 0")
}
