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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/pebbletest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	pebbletest.Cleanup()
	os.Exit(code)
}

// verge builds the binary once per test run.
func verge(t *testing.T) string {
	t.Helper()
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
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testOrigin(t *testing.T, body string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// logFile is a subprocess's stderr. It is a file, not a pipe: after an upgrade the new
// process inherits it, and exec.Cmd.Wait would wait for a pipe's last writer.
type logFile struct{ f *os.File }

func newLogFile(t *testing.T) *logFile {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &logFile{f}
}

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.f.Name())
	return string(b)
}

type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	stderr  *logFile
	dir     string
	cfgFile string
	pidFile string
	addr    string
	exited  chan error
}

func writeConfig(t *testing.T, path, listen, pidFile, origin string) {
	t.Helper()
	y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
routes:
  - name: proxied
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 5s}
`, listen, origin, pidFile)
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startVerge runs `verge run` on a config proxying to origin and waits until it serves.
func startVerge(t *testing.T, origin string) *proc {
	t.Helper()
	p := launchVerge(t, func(p *proc) { writeConfig(t, p.cfgFile, p.addr, p.pidFile, origin) })
	deadline := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for {
		if _, err := p.get(http.DefaultClient, "/"); err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("verge did not start serving; stderr:\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launchVerge starts `verge run` on the config write puts in p.cfgFile (listening on p.addr,
// with p.pidFile), and stops it, or the process that took over after an upgrade, when t ends.
func launchVerge(t *testing.T, write func(p *proc)) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{t: t, dir: dir, cfgFile: filepath.Join(dir, "verge.yaml"), pidFile: filepath.Join(dir, "verge.pid"),
		addr: freePort(t), stderr: newLogFile(t), exited: make(chan error, 1)}
	write(p)
	p.cmd = exec.Command(verge(t), "run", "-c", p.cfgFile)
	p.cmd.Stderr = p.stderr.f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		// Stop whichever process now owns the pid file (an upgrade replaces the first).
		if pid, err := readPID(p.pidFile); err == nil && pid != p.cmd.Process.Pid {
			syscall.Kill(pid, syscall.SIGINT)
		}
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("verge stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

func (p *proc) get(c *http.Client, path string) (string, error) {
	resp, err := c.Get("http://" + p.addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// load sends requests continuously from n clients until stop is called, and reports how many
// failed.
type load struct {
	total, failed atomic.Int64
	lastErr       atomic.Value
	stopc         chan struct{}
	wg            sync.WaitGroup
}

func startLoad(p *proc, n int) *load {
	l := &load{stopc: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				if _, err := p.get(c, "/"); err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err)
				}
				l.total.Add(1)
			}
		}()
	}
	return l
}

// waitRequests waits until the clients completed n more requests: an event that paces a test
// by traffic, not by time, however busy the machine is.
func (l *load) waitRequests(t *testing.T, n int64) {
	t.Helper()
	want := l.total.Load() + n
	guard := time.Now().Add(30 * time.Second) // a failure guard
	for l.total.Load() < want {
		if time.Now().After(guard) {
			t.Fatalf("load stalled at %d requests", l.total.Load())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func (l *load) stop(t *testing.T) {
	close(l.stopc)
	l.wg.Wait()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed; last error: %v", n, l.total.Load(), l.lastErr.Load())
	}
	if l.total.Load() < 20 {
		t.Errorf("only %d requests were sent", l.total.Load())
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloadUnderLoadAndRefusedConfig(t *testing.T) {
	o1, o2 := testOrigin(t, "one"), testOrigin(t, "two")
	p := startVerge(t, o1)
	if got, err := p.get(http.DefaultClient, "/"); got != "one" {
		t.Fatalf("proxied request: got %q, %v; want \"one\"", got, err)
	}
	l := startLoad(p, 4)
	l.waitRequests(t, 20)

	writeConfig(t, p.cfgFile, p.addr, p.pidFile, o2)
	out, err := exec.Command(verge(t), "reload", "-c", p.cfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("verge reload: %v\n%s", err, out)
	}
	waitFor(t, "the reloaded config to serve", 30*time.Second, func() bool {
		got, _ := p.get(http.DefaultClient, "/")
		return got == "two"
	})

	// A broken config is refused and the running one keeps serving.
	os.WriteFile(p.cfgFile, []byte("listeners:\n  - address: 127.0.0.1:1\nroutes:\n  - upstream: nope\n"), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal in the log", 30*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "reload refused")
	})
	if !strings.Contains(p.stderr.String(), `verge.yaml:4:15: routes[0].upstream: unknown upstream group \"nope\"`) {
		t.Errorf("refusal does not name the position and field:\n%s", p.stderr.String())
	}
	l.waitRequests(t, 20) // traffic after the refusal, on the running config
	l.stop(t)
	if got, err := p.get(http.DefaultClient, "/"); got != "two" {
		t.Errorf("after a refused reload: got %q, %v; want \"two\"", got, err)
	}
}

func TestGracefulDrainOnSIGTERM(t *testing.T) {
	// The origin holds the request until verge has logged the start of its drain: events,
	// not sleeps, so a busy machine cannot reorder the request and the signal.
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" { // startVerge's readiness probe
			io.WriteString(w, "ready")
			return
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slow but complete")
	}))
	t.Cleanup(o.Close)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	p := startVerge(t, strings.TrimPrefix(o.URL, "http://"))
	res := make(chan string, 1)
	go func() {
		got, err := p.get(http.DefaultClient, "/slow")
		if err != nil {
			got = err.Error()
		}
		res <- got
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second): // a failure guard
		t.Fatal("the request never reached the origin")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "verge to log its graceful shutdown", 30*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "graceful shutdown")
	})
	releaseOnce.Do(func() { close(release) })
	select {
	case got := <-res:
		if got != "slow but complete" {
			t.Errorf("in-flight request during SIGTERM: got %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("verge exited with %v after SIGTERM, want 0", err)
		}
		p.exited <- err
	case <-time.After(30 * time.Second):
		t.Fatal("verge did not exit after draining")
	}
	if _, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond); err == nil {
		t.Error("still accepting after SIGTERM")
	}
}

func TestUpgradeUnderLoad(t *testing.T) {
	p := startVerge(t, testOrigin(t, "same"))
	oldPID := p.cmd.Process.Pid
	waitFor(t, "the pid file", 5*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		return err == nil && pid == oldPID
	})
	l := startLoad(p, 4)
	l.waitRequests(t, 20)
	p.cmd.Process.Signal(syscall.SIGUSR2)
	var newPID int
	waitFor(t, "the new process to write its pid", 10*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		newPID = pid
		return err == nil && pid != oldPID
	})
	select {
	case <-p.exited:
		p.exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("old process did not exit after the upgrade")
	}
	l.waitRequests(t, 20) // traffic on the new process alone
	l.stop(t)
	if got, err := p.get(http.DefaultClient, "/"); got != "same" {
		t.Errorf("after the upgrade: got %q, %v", got, err)
	}
	if err := syscall.Kill(newPID, 0); err != nil {
		t.Errorf("new process %d is not running: %v", newPID, err)
	}
	syscall.Kill(newPID, syscall.SIGTERM)
	waitFor(t, "the new process to exit", 10*time.Second, func() bool {
		return syscall.Kill(newPID, 0) != nil
	})
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	writeConfig(t, good, "127.0.0.1:8080", filepath.Join(dir, "pid"), "127.0.0.1:9000")
	os.WriteFile(bad, []byte("listeners:\n  - address: 127.0.0.1:8080\n    tls: {certificates: []}\n    colour: blue\n"), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "-c", good}, &stdout, &stderr); code != 0 || stdout.String() != "ok\n" {
		t.Errorf("validate good: code %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"validate", "-c", bad}, &stdout, &stderr)
	want := bad + `:4:5: listeners[0].colour: unknown field "colour"` + "\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("validate bad: code %d stderr %q, want 1 and %q", code, stderr.String(), want)
	}
	stderr.Reset()
	if code := run([]string{"validate", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "Usage: verge validate") {
		t.Errorf("validate --help: code %d output %q", code, stderr.String())
	}
}

func TestProxyCommand(t *testing.T) {
	origin := testOrigin(t, "via proxy command")
	// Port 0: the process picks its port and logs it, so no other process can take a port
	// the test picked and freed, and the log line is the readiness event (a successful
	// request could come before the line is written: the listener serves as soon as it binds).
	cmd := exec.Command(verge(t), "proxy", "--listen", "127.0.0.1:0", "--upstream", "http://"+origin, "--access-log", "off")
	stderr := newLogFile(t)
	cmd.Stderr = stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGINT); <-exited })
	p := &proc{addr: listeningAddr(t, stderr, "proxy", exited)}
	if got, err := p.get(http.DefaultClient, "/"); got != "via proxy command" {
		t.Errorf("request through verge proxy: got %q, %v", got, err)
	}
}

// listeningAddr waits for the "listening" log line of the named listener in a verge
// process's stderr and returns the address it gives. It fails if the process exits first.
func listeningAddr(t *testing.T, stderr *logFile, listener string, exited <-chan struct{}) string {
	t.Helper()
	prefix := "msg=listening listener=" + listener + " url="
	guard := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for {
		for _, line := range strings.Split(stderr.String(), "\n") {
			if _, rest, ok := strings.Cut(line, prefix); ok {
				url, _, _ := strings.Cut(rest, " ")
				_, addr, _ := strings.Cut(url, "://")
				return addr
			}
		}
		if time.Now().After(guard) {
			t.Fatalf("no listening line for %q in the log:\n%s", listener, stderr.String())
		}
		select {
		case <-exited:
			t.Fatalf("verge exited before listening:\n%s", stderr.String())
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "verge ") {
		t.Errorf("version: code %d output %q", code, out.String())
	}
}
