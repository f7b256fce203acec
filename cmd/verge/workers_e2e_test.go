package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// devProc is a running `verge dev`.
type devProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *logFile
	exited chan error
}

func startDev(t *testing.T, data, pkg string, extra ...string) *devProc {
	t.Helper()
	p := launchDev(t, data, pkg, extra...)
	c := &http.Client{Timeout: time.Second}
	waitFor(t, "verge dev to serve", 90*time.Second, func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("verge dev exited: %v\n%s", err, p.stderr)
		default:
		}
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.Header.Get("X-Verge-Dev") == "" // not the building page
	})
	return p
}

// launchDev starts `verge dev` on pkg without waiting for it to serve.
func launchDev(t *testing.T, data, pkg string, extra ...string) *devProc {
	t.Helper()
	p := newDevProc(t)
	args := append([]string{"dev", "--data", data, "--listen", p.addr, "--poll", "100ms"}, extra...)
	p.start(t, exec.Command(verge(t), append(args, pkg)...))
	return p
}

// newDevProc picks the address and output file of a `verge dev` to start.
func newDevProc(t *testing.T) *devProc {
	return &devProc{addr: freePort(t), stderr: newLogFile(t), exited: make(chan error, 1)}
}

// start runs cmd, a `verge dev` serving on p.addr; cleanup kills it and, when the test
// failed, logs its output.
func (p *devProc) start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	p.cmd = cmd
	cmd.Stderr, cmd.Stdout = p.stderr.f, p.stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("verge dev output:\n%s", p.stderr)
		}
	})
}

func (p *devProc) do(c *http.Client, method, path, body string) (int, string, error) {
	return doRequest(c, p.addr, method, path, body)
}

// doRequest sends one request to addr and returns the status and the whole body.
func doRequest(c *http.Client, addr, method, path, body string) (int, string, error) {
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (p *devProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("verge dev did not exit on %v\n%s", sig, p.stderr)
	}
	p.exited <- nil
}

func counterDir() string { return filepath.Join(testwasm.Root(), "examples", "workers", "counter") }

// TestDevCounterExactlyOnceAndSurvivesRestart: concurrent increments of one object return
// each value once and end at the number of requests; the count survives a restart.
func TestDevCounterExactlyOnceAndSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, counterDir())
	const clients, each = 8, 25
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for range each {
				code, body, err := p.do(c, "GET", "/counter/shared", "")
				n, perr := strconv.Atoi(body)
				if err != nil || code != 200 || perr != nil {
					t.Errorf("increment: %d %q %v", code, body, err)
					return
				}
				mu.Lock()
				seen[n]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for n := 1; n <= clients*each; n++ {
		if seen[n] != 1 {
			t.Fatalf("value %d answered %d times, want once (%d distinct values)", n, seen[n], len(seen))
		}
	}
	if len(seen) != clients*each {
		t.Fatalf("%d distinct values, want %d", len(seen), clients*each)
	}
	p.stop(t, syscall.SIGTERM)
	p = startDev(t, data, counterDir())
	c := &http.Client{Timeout: 10 * time.Second}
	if code, body, err := p.do(c, "GET", "/counter/shared", ""); code != 200 || body != strconv.Itoa(clients*each+1) {
		t.Fatalf("after restart: got %d %q %v, want %d", code, body, err, clients*each+1)
	}
}

// TestDevKill9LosesNoAcknowledgedWrite kills `verge dev` with SIGKILL in the middle of KV and
// Durable Object writes; every write acknowledged before the kill must be there afterwards.
func TestDevKill9LosesNoAcknowledgedWrite(t *testing.T) {
	data := t.TempDir()
	p := startDev(t, data, counterDir())
	var acked sync.Map // key -> value
	var maxCount atomic.Int64
	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if g%2 == 0 {
					key, val := fmt.Sprintf("k-%d-%d", g, i), fmt.Sprintf("v%d", i)
					if code, _, err := p.do(c, "PUT", "/kv/"+key, val); err == nil && code == 204 {
						acked.Store(key, val)
						writes.Add(1)
					}
					continue
				}
				if code, body, err := p.do(c, "GET", "/counter/k9", ""); err == nil && code == 200 {
					n, _ := strconv.ParseInt(body, 10, 64)
					for {
						m := maxCount.Load()
						if n <= m || maxCount.CompareAndSwap(m, n) {
							break
						}
					}
					writes.Add(1)
				}
			}
		}()
	}
	waitFor(t, "writes under load", 20*time.Second, func() bool { return writes.Load() >= 200 })
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil
	close(stop)
	wg.Wait()
	t.Logf("%d writes acknowledged before SIGKILL, counter at %d", writes.Load(), maxCount.Load())

	p = startDev(t, data, counterDir())
	c := &http.Client{Timeout: 10 * time.Second}
	missing := 0
	acked.Range(func(k, v any) bool {
		code, body, err := p.do(c, "GET", "/kv/"+k.(string), "")
		if err != nil || code != 200 || body != v.(string) {
			missing++
			t.Errorf("acknowledged %s=%s: got %d %q %v", k, v, code, body, err)
		}
		return missing < 5
	})
	code, body, err := p.do(c, "GET", "/counter/k9", "")
	n, _ := strconv.ParseInt(body, 10, 64)
	if err != nil || code != 200 || n <= maxCount.Load() {
		t.Fatalf("counter after kill: got %d %q %v, want more than the acknowledged %d", code, body, err, maxCount.Load())
	}
}

// TestDevRebuildsOnChange edits a worker's source while `verge dev` runs.
func TestDevRebuildsOnChange(t *testing.T) {
	// Inside the module, so the package can import the SDK; testdata keeps it out of ./...
	parent := filepath.Join(testwasm.Root(), "cmd", "verge", "testdata")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "devworker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src := func(greeting string) []byte {
		return []byte(`package main

import sdk "github.com/verge-edge/verge/sdk/go"

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) { w.Write([]byte("` + greeting + `")) })
}

func main() {}
`)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startDev(t, t.TempDir(), dir)
	c := &http.Client{Timeout: 5 * time.Second}
	if _, body, _ := p.do(c, "GET", "/", ""); body != "one" {
		t.Fatalf("got %q, want one", body)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), src("two"), 0o644)
	waitFor(t, "the rebuilt worker", 90*time.Second, func() bool {
		_, body, _ := p.do(c, "GET", "/", "")
		return body == "two"
	})
}

// TestRunDeploysWorkerThroughAdmin deploys a new module into a running server under load.
func TestRunDeploysWorkerThroughAdmin(t *testing.T) {
	hello := testwasm.BuildFile(t, "examples/workers/hello")
	counter := testwasm.Build(t, "examples/workers/counter")
	adminAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
routes: [{name: w, worker: app}]
workers:
  - name: app
    module: %q
    kv: [{binding: KV}]
    durable_objects: [{binding: COUNTER, class: Counter}]
    # What this test checks is deploys: a CPU limit met on a machine saturated by the
    # deploy's compilation is another matter (worker CPU accounting has its own tests).
    limits: {cpu_time: 10s}
`, p.addr, adminAddr, p.pidFile, hello)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	listen, stderr := p.addr, p.stderr
	c := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := c.Get("http://" + listen + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "verge run to serve", 30*time.Second, func() bool { code, _ := get("/"); return code == 200 })
	if _, body := get("/counter/a"); body != "hello from /counter/a\n" {
		t.Fatalf("before deploy: %q\n%s", body, stderr)
	}
	var failed, total atomic.Int64
	var lastFailure atomic.Value
	stop := make(chan struct{})
	progress := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body := get("/kv/x")
				total.Add(1)
				if code != 200 && code != 404 {
					failed.Add(1)
					lastFailure.Store(fmt.Sprintf("%d %s", code, body))
				}
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	// awaitRequests waits until n more requests were answered (the guard only catches a stall).
	awaitRequests := func(n int64) {
		target := total.Load() + n
		guard := time.After(60 * time.Second)
		for total.Load() < target {
			select {
			case <-progress:
			case <-guard:
				t.Fatalf("load stalled at %d requests", total.Load())
			}
		}
	}
	awaitRequests(50)
	// Deploy several times under load: each deploy swaps the version that requests in flight
	// were about to take.
	for _, module := range [][]byte{counter, helloModule(t, hello), counter} {
		req, _ := http.NewRequest("PUT", "http://"+adminAddr+"/workers/app", bytes.NewReader(module))
		req.Header.Set("Content-Type", "application/wasm") // the admin API requires it
		// Compiling a module on a busy machine may take a while: a guard, not a limit.
		resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("deploy: %d %s", resp.StatusCode, b)
		}
		t.Logf("deploy answer: %s", b)
		awaitRequests(50)
	}
	// A module that does not compile is refused with the reason; the version deployed last
	// keeps serving (the load above counts any failure).
	req, _ := http.NewRequest("PUT", "http://"+adminAddr+"/workers/app", bytes.NewReader([]byte("\x00asm\x01\x00\x00\x00")))
	req.Header.Set("Content-Type", "application/wasm")
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(b), "verge_handle") {
		t.Fatalf("deploy of a bad module: %d %s, want 422 with the reason", resp.StatusCode, b)
	}
	awaitRequests(50)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the deploys; last: %v\nverge log:\n%s", failed.Load(), total.Load(), lastFailure.Load(), stderr)
	}
	if code, body := get("/counter/a"); code != 200 || body != "1" {
		t.Fatalf("after deploy: %d %q, want the counter", code, body)
	}
	checkWorkerMetrics(t, adminAddr, "app", total.Load())
}

// checkWorkerMetrics scrapes the admin API's /metrics and checks the worker's series: at
// least minFetches fetch invocations, a live Durable Object, and every error kind present.
func checkWorkerMetrics(t *testing.T, adminAddr, name string, minFetches int64) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "verge_worker_") {
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				v, _ := strconv.ParseFloat(line[i+1:], 64)
				series[line[:i]] = v
			}
		}
	}
	w := `worker="` + name + `"`
	if got := series[`verge_worker_invocations_total{kind="fetch",`+w+`}`]; got < float64(minFetches) {
		t.Errorf("fetch invocations = %v, want >= %d\n%s", got, minFetches, b)
	}
	if got := series[`verge_worker_invocations_total{kind="object",`+w+`}`]; got < 1 {
		t.Errorf("object invocations = %v, want >= 1", got)
	}
	if got := series[`verge_worker_durable_objects{`+w+`}`]; got != 1 {
		t.Errorf("live durable objects = %v, want 1", got)
	}
	if got := series[`verge_worker_cpu_seconds_total{`+w+`}`]; got <= 0 {
		t.Errorf("cpu seconds = %v, want > 0", got)
	}
	for _, k := range []string{"crashed", "cpu_limit", "wall_limit", "no_response", "overloaded", "unavailable", "memory_limit"} {
		if _, ok := series[`verge_worker_errors_total{kind="`+k+`",`+w+`}`]; !ok {
			t.Errorf("/metrics lacks the %s errors of worker %s", k, name)
		}
	}
	for _, n := range []string{`verge_worker_instances{state="idle",` + w + `}`, `verge_worker_memory_bytes{` + w + `}`, `verge_worker_durable_object_evictions_total{` + w + `}`} {
		if _, ok := series[n]; !ok {
			t.Errorf("/metrics lacks %s", n)
		}
	}
}

// TestRunServesWhileWorkersCompile starts `verge run` with an empty compilation cache: the
// listener answers while the worker compiles, and a request for the worker sent as soon as
// the server answers waits for it instead of failing.
func TestRunServesWhileWorkersCompile(t *testing.T) {
	hello := testwasm.BuildFile(t, "examples/workers/hello")
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
routes:
  - {name: plain, match: {path: /plain}, respond: {status: 200, body: "plain"}}
  - {name: w, match: {path_prefix: /w/}, worker: app}
workers:
  - {name: app, module: %q}
`, p.addr, p.pidFile, filepath.Join(p.dir, "data"), hello)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	waitFor(t, "verge run to answer", 30*time.Second, func() bool { body, err := p.get(http.DefaultClient, "/plain"); return err == nil && body == "plain" })
	// Compiling on a busy machine may take a while: a guard, not a limit.
	body, err := p.get(&http.Client{Timeout: 2 * time.Minute}, "/w/x")
	if err != nil || body != "hello from /w/x\n" {
		t.Fatalf("worker request sent as the server started: %q %v\n%s", body, err, p.stderr)
	}
	waitFor(t, "the start-up deploy to be logged", 30*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "workers deployed")
	})
}

func TestKVCommand(t *testing.T) {
	data := t.TempDir()
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(verge(t), append([]string{"kv"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("", "put", "--data", data, "ns", "a", "one", "--metadata", `{"v":1}`); err != nil {
		t.Fatalf("put: %v %s", err, out)
	}
	if out, err := run("from stdin", "put", "--data", data, "ns", "b"); err != nil {
		t.Fatalf("put from stdin: %v %s", err, out)
	}
	if out, err := run("", "get", "--data", data, "ns", "b"); err != nil || out != "from stdin" {
		t.Fatalf("get: %q %v", out, err)
	}
	out, err := run("", "list", "--data", data, "ns", "--limit", "1")
	if err != nil || !strings.Contains(out, `"name": "a"`) || !strings.Contains(out, `"metadata": {`) || !strings.Contains(out, `"cursor"`) {
		t.Fatalf("list: %s %v", out, err)
	}
	if out, err := run("", "delete", "--data", data, "ns", "a"); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	if out, err := run("", "get", "--data", data, "ns", "a"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("get deleted: %q %v", out, err)
	}
	if out, err := run("", "namespaces", "--data", data); err != nil || out != "ns\n" {
		t.Fatalf("namespaces: %q %v", out, err)
	}
	if _, err := run("", "frob", "ns"); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	if out, err := run("", "list", "--data", data, "ns", "--cursor", "zzzz"); err == nil || !strings.Contains(out, "invalid cursor") {
		t.Fatalf("list with an invalid cursor: %q %v, want an error", out, err)
	}
}

// TestKVCommandReadOnly: get, list and delete of a namespace that does not exist report
// it and exit non-zero, creating neither the namespace nor the data directory.
func TestKVCommandReadOnly(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{{"get", "missing", "k"}, {"list", "missing"}, {"delete", "missing", "k"}} {
		cmd := exec.Command(verge(t), append([]string{"kv", args[0], "--data", data}, args[1:]...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), `namespace "missing" not found`) {
			t.Fatalf("kv %v: %q %v, want namespace not found and exit status 1", args, out, err)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("kv %v created %s (%v)", args, data, err)
		}
	}
	// An existing namespace is read without being changed: its file stays as it was.
	put := exec.Command(verge(t), "kv", "put", "--data", data, "ns", "a", "one")
	if out, err := put.CombinedOutput(); err != nil {
		t.Fatalf("put: %v %s", err, out)
	}
	file := filepath.Join(data, "kv", "ns.sqlite")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"get", "ns", "a"}, {"list", "ns"}, {"get", "ns", "absent"}} {
		out, _ := exec.Command(verge(t), append([]string{"kv", args[0], "--data", data}, args[1:]...)...).CombinedOutput()
		if args[0] == "get" && args[2] == "a" && string(out) != "one" {
			t.Fatalf("kv %v: %q", args, out)
		}
	}
	after, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("reading changed %s (%v)", file, err)
	}
}

// TestDevWaitsForAFix is issue 12's `verge dev` report. Started with no PATH in a package
// that does not compile, `verge dev` binds its port at once and answers 503 (building, then
// the compiler's output) instead of exiting; the go build output appears verbatim on stderr;
// once the source is fixed it serves the worker, printing one line per request.
func TestDevWaitsForAFix(t *testing.T) {
	pkg := t.TempDir()
	root := testwasm.Root()
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"go.mod": "module devtest\n\ngo 1.26\n\nrequire github.com/verge-edge/verge v0.0.0\n\nreplace github.com/verge-edge/verge => " + root + "\n",
		"go.sum": string(sum),
		"main.go": `package main

import sdk "github.com/verge-edge/verge/sdk/go"

func init() {
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		w.Write([]byte(greeting()))
	})
}

func main() {}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(pkg, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := newDevProc(t)
	cmd := exec.Command(verge(t), "dev", "--data", t.TempDir(), "--listen", p.addr, "--poll", "50ms")
	cmd.Dir = pkg // no PATH: the current directory
	// The test module lists only verge: let go complete its requirements from the local
	// module cache, offline.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	p.start(t, cmd)
	c := &http.Client{Timeout: 5 * time.Second}
	get := func() (int, string, string) {
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			return 0, "", ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Verge-Dev"), string(b)
	}
	seen := map[string]bool{}
	var body string
	waitFor(t, "the compile error page", 120*time.Second, func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("verge dev exited on a compile error: %v", err)
		default:
		}
		code, state, b := get()
		if code != 0 {
			if code != 503 || state == "" {
				t.Fatalf("before any build succeeded: %d %q %q, want 503 with X-Verge-Dev", code, state, b)
			}
			seen[state] = true
		}
		body = b
		return state == "build-failed"
	})
	t.Logf("pages seen while building: %v", seen)
	if !strings.Contains(body, "undefined: greeting") {
		t.Fatalf("error page lacks the compiler's message:\n%s", body)
	}
	if out := p.stderr.String(); !strings.Contains(out, "\n./main.go:7:18: undefined: greeting\n") {
		t.Fatalf("the go build output is not on stderr verbatim:\n%s", out)
	}
	fixed := strings.Replace(files["main.go"], "func main() {}", "func greeting() string { return \"fixed\" }\n\nfunc main() {}", 1)
	if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed worker", 120*time.Second, func() bool {
		code, _, b := get()
		return code == 200 && b == "fixed"
	})
	waitFor(t, "a request log line", 10*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "GET / 200 ")
	})
	if !strings.Contains(p.stderr.String(), "GET / 503 ") {
		t.Fatalf("no log line for the 503 answers:\n%s", p.stderr)
	}
}

// TestDevHeadOfStreamedResponse is issue 12's HEAD report, through the binary: HEAD on a
// worker response that GET streams chunked answers without Content-Length (it answered
// Content-Length: 0).
func TestDevHeadOfStreamedResponse(t *testing.T) {
	p := startDev(t, t.TempDir(), filepath.Join(testwasm.Root(), "worker", "testdata", "misbehave"))
	head := func(method string) string {
		conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "%s /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", method)
		b, _ := io.ReadAll(conn)
		h, _, _ := strings.Cut(string(b), "\r\n\r\n")
		return strings.ToLower(h)
	}
	get, hd := head("GET"), head("HEAD")
	if !strings.HasPrefix(get, "http/1.1 200") || !strings.Contains(get, "transfer-encoding: chunked") {
		t.Fatalf("GET head:\n%s", get)
	}
	if !strings.HasPrefix(hd, "http/1.1 200") || strings.Contains(hd, "content-length") || !strings.Contains(hd, "content-type: text/plain") {
		t.Fatalf("HEAD head (want GET's fields, no Content-Length):\n%s", hd)
	}
}

// helloModule reads the hello worker's module built at path.
func helloModule(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
