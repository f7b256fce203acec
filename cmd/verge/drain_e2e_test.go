package main

import (
	"bufio"
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
)

// rawLoad is what wrk does: keep-alive clients that send their next request as soon as the
// last response is read, never retry, and reconnect only after a response that said
// "Connection: close". Any request without a complete response is an error. Go's
// http.Transport would hide exactly the failures looked for here: it retries a request on a
// reused connection that closes before any response byte.
type rawLoad struct {
	addr    string
	done    atomic.Int64 // complete responses
	closes  atomic.Int64 // responses that said "Connection: close"
	mu      sync.Mutex
	errs    []string
	stopc   chan struct{}
	wg      sync.WaitGroup
	notify  chan struct{}  // receives (without blocking) after each response
	each    []atomic.Int64 // complete responses by client
	variant sync.Map       // X-Variant values seen
}

// rawLoadMax bounds each client's requests, so the test always stops.
const rawLoadMax = 200_000

func startRawLoad(t *testing.T, addr string, clients int) *rawLoad {
	l := &rawLoad{addr: addr, stopc: make(chan struct{}), notify: make(chan struct{}, 1), each: make([]atomic.Int64, clients)}
	for i := range clients {
		l.wg.Add(1)
		go l.client(i)
	}
	t.Cleanup(l.halt)
	return l
}

func (l *rawLoad) halt() {
	select {
	case <-l.stopc:
	default:
		close(l.stopc)
	}
	l.wg.Wait()
}

func (l *rawLoad) fail(format string, args ...any) {
	l.mu.Lock()
	if len(l.errs) < 50 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

func (l *rawLoad) stopped() bool {
	select {
	case <-l.stopc:
		return true
	default:
		return false
	}
}

func (l *rawLoad) client(id int) {
	defer l.wg.Done()
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	req := []byte("GET / HTTP/1.1\r\nHost: verge.test\r\n\r\n")
	for n := 0; n < rawLoadMax && !l.stopped(); n++ {
		if c == nil {
			var err error
			if c, err = net.DialTimeout("tcp", l.addr, 10*time.Second); err != nil {
				l.fail("client %d: connect: %v", id, err)
				return
			}
			br = bufio.NewReader(c)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(req); err != nil {
			l.fail("client %d request %d: write: %v", id, n, err)
			return
		}
		closing, err := l.readResponse(br)
		if err != nil {
			l.fail("client %d request %d: %v", id, n, err)
			return
		}
		l.each[id].Add(1)
		l.done.Add(1)
		select {
		case l.notify <- struct{}{}:
		default:
		}
		if closing {
			l.closes.Add(1)
			c.Close()
			c = nil
		}
	}
}

// readResponse reads one response with a Content-Length body.
func (l *rawLoad) readResponse(br *bufio.Reader) (closing bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return false, fmt.Errorf("read status line: %w", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 200 ") {
		return false, fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return false, fmt.Errorf("read head: %w", err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "connection":
			closing = strings.EqualFold(v, "close")
		case "content-length":
			length, _ = strconv.Atoi(v)
		case "x-variant":
			l.variant.Store(v, true)
		}
	}
	if length < 0 {
		return false, fmt.Errorf("response without Content-Length")
	}
	if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
		return false, fmt.Errorf("read body: %w", err)
	}
	return closing, nil
}

// await waits until n more responses were read (the guard only catches a stall).
func (l *rawLoad) await(t *testing.T, n int64) {
	t.Helper()
	target := l.done.Load() + n
	guard := time.After(60 * time.Second)
	for l.done.Load() < target {
		select {
		case <-l.notify:
		case <-guard:
			t.Fatalf("load stalled at %d responses (want %d); errors: %v", l.done.Load(), target, l.errors())
		}
	}
}

// awaitEach waits until every client has read n more responses: then each request a client
// had in flight when awaitEach was called has been answered.
func (l *rawLoad) awaitEach(t *testing.T, n int64) {
	t.Helper()
	targets := make([]int64, len(l.each))
	for i := range l.each {
		targets[i] = l.each[i].Load() + n
	}
	guard := time.After(60 * time.Second)
	for i := range l.each {
		for l.each[i].Load() < targets[i] {
			select {
			case <-l.notify:
			case <-guard:
				t.Fatalf("load client %d stalled at %d responses (want %d); errors: %v", i, l.each[i].Load(), targets[i], l.errors())
			}
		}
	}
}

func (l *rawLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func writeVariantConfig(t *testing.T, p *proc, origin string, variant int) {
	t.Helper()
	y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
routes:
  - name: r%d
    upstream: app
    response_headers: {set: {X-Variant: "v%d"}}
upstreams:
  - name: app
    servers: [{address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 10s}
`, p.addr, variant, variant, origin, p.pidFile)
	if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}

// upgradeOnce sends SIGUSR2 to pid and waits for the new process to write the pid file and
// the old one to exit; it returns the new pid.
func upgradeOnce(t *testing.T, p *proc, pid int, exited func() bool) int {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var newPID int
	waitFor(t, "the new process to write the pid file", 30*time.Second, func() bool {
		got, err := readPID(p.pidFile)
		newPID = got
		return err == nil && got != pid
	})
	waitFor(t, "the old process to drain and exit", 30*time.Second, exited)
	return newPID
}

// TestNoRequestLostOnUpgradeAndReload is the check of issue 12 run from the inside: keep-alive
// clients send back-to-back requests, without retries, through two binary upgrades (SIGUSR2
// to the server, then to the process that replaced it) and route-changing reloads (SIGHUP
// through `verge reload`). Every request must get a complete response.
func TestNoRequestLostOnUpgradeAndReload(t *testing.T) {
	const clients, step = 16, 300
	origin := testOrigin(t, "same")
	p := launchVerge(t, func(p *proc) { writeVariantConfig(t, p, origin, 0) })
	waitFor(t, "verge to write its pid file", 30*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		return err == nil && pid == p.cmd.Process.Pid
	})
	l := startRawLoad(t, p.addr, clients)
	l.await(t, step)

	firstExited := func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			return true
		default:
			return false
		}
	}
	pid := upgradeOnce(t, p, p.cmd.Process.Pid, firstExited)
	l.await(t, step)
	// The process started by the upgrade is not our child: it is gone when kill -0 fails.
	second := pid
	pid = upgradeOnce(t, p, second, func() bool { return syscall.Kill(second, 0) != nil })
	l.await(t, step)

	for v := 1; v <= 3; v++ {
		writeVariantConfig(t, p, origin, v)
		out, err := exec.Command(verge(t), "reload", "-c", p.cfgFile).CombinedOutput()
		if err != nil {
			t.Fatalf("verge reload: %v\n%s", err, out)
		}
		if want := fmt.Sprintf("reloaded (pid %d)", pid); !strings.Contains(string(out), want) {
			t.Errorf("verge reload said %q, want %q", out, want)
		}
		l.await(t, step)
	}
	l.halt()
	if errs := l.errors(); len(errs) > 0 {
		t.Errorf("%d of the clients failed; first failures:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if _, ok := l.variant.Load("v3"); !ok {
		t.Error("responses never showed the last reloaded route")
	}
	t.Logf("%d responses, %d with Connection: close", l.done.Load(), l.closes.Load())
	if pid != 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		waitFor(t, "the last process to exit", 30*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	}
}

// upgradedFrom returns the pid of a live process, other than old, whose command line is want
// (the process an upgrade of old started: the same arguments), or 0 (Linux /proc). It does
// not rely on the parent: once old exits, its child belongs to another parent.
func upgradedFrom(old int, want []byte) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		if pid == old || len(fields) == 0 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		if cl, err := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline")); err == nil && bytes.Equal(cl, want) {
			return pid
		}
	}
	return 0
}

// TestNoRequestLostOnProxyUpgrade is the same check for `verge proxy`, which has no pid file:
// the process an upgrade starts is found as the old one's child.
func TestNoRequestLostOnProxyUpgrade(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to find the upgraded process")
	}
	const clients, step = 16, 300
	origin := testOrigin(t, "same")
	// Port 0: verge picks its port (which no other process can take in between) and logs it.
	cmd := exec.Command(verge(t), "proxy", "--listen", "127.0.0.1:0", "--upstream", "http://"+origin, "--access-log", "off")
	log := newLogFile(t)
	cmd.Stderr = log.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGINT)
		cmd.Process.Signal(syscall.SIGINT)
		<-exited
		if t.Failed() {
			t.Logf("verge proxy stderr:\n%s", log.String())
		}
	})
	// The command line shows in /proc once the exec has completed in the child.
	var cmdline []byte
	waitFor(t, "the command line of verge proxy", 30*time.Second, func() bool {
		cmdline, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return bytes.Contains(cmdline, []byte("proxy"))
	})
	addr := listeningAddr(t, log, "proxy", exited)
	waitFor(t, "verge proxy to serve", 30*time.Second, func() bool {
		got, _ := (&proc{addr: addr}).get(http.DefaultClient, "/")
		return got == "same"
	})
	l := startRawLoad(t, addr, clients)
	l.await(t, step)
	for i := range 2 {
		old := pid
		var next int
		if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new process", 30*time.Second, func() bool { next = upgradedFrom(old, cmdline); return next != 0 })
		if i == 0 {
			waitFor(t, "the old process to drain and exit", 30*time.Second, func() bool {
				select {
				case <-exited:
					return true
				default:
					return false
				}
			})
		} else {
			waitFor(t, "the old process to drain and exit", 30*time.Second, func() bool { return syscall.Kill(old, 0) != nil })
		}
		pid = next
		l.await(t, step)
	}
	l.halt()
	if errs := l.errors(); len(errs) > 0 {
		t.Errorf("%d of the clients failed; first failures:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	t.Logf("%d responses, %d with Connection: close", l.done.Load(), l.closes.Load())
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, "the last process to exit", 30*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
}

// TestReloadTargetsItsOwnServerAndReportsResult runs two servers from two config files that set
// no pid_file: each gets its own pid file, `verge reload -c` reloads the right one and says
// whether the reload was applied or refused, and a third server given a pid file in use is
// refused.
func TestReloadTargetsItsOwnServerAndReportsResult(t *testing.T) {
	runtimeDir := t.TempDir()
	env := append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir)
	o1, o2 := testOrigin(t, "one"), testOrigin(t, "two")
	type server struct {
		cfg, addr string
		cmd       *exec.Cmd
	}
	write := func(s *server, origin, extra string) {
		y := fmt.Sprintf("listeners:\n  - name: main\n    address: %s\n%sroutes:\n  - name: r\n    upstream: app\n"+
			"upstreams:\n  - name: app\n    servers: [{address: %q}]\nadmin: {disabled: true}\naccess_log: {output: \"off\"}\n",
			s.addr, extra, origin)
		if err := os.WriteFile(s.cfg, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func(s *server) {
		s.cmd = exec.Command(verge(t), "run", "-c", s.cfg)
		s.cmd.Env = env
		log := newLogFile(t)
		s.cmd.Stderr = log.f
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.cmd.Wait()
			if t.Failed() {
				t.Logf("%s stderr:\n%s", s.cfg, log.String())
			}
		})
	}
	get := func(s *server) string {
		got, _ := (&proc{addr: s.addr}).get(http.DefaultClient, "/")
		return got
	}
	reload := func(s *server) (string, error) {
		cmd := exec.Command(verge(t), "reload", "-c", s.cfg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	a := &server{cfg: filepath.Join(t.TempDir(), "a.yaml"), addr: freePort(t)}
	b := &server{cfg: filepath.Join(t.TempDir(), "b.yaml"), addr: freePort(t)}
	write(a, o1, "")
	write(b, o1, "")
	start(a)
	start(b)
	waitFor(t, "both servers to serve", 30*time.Second, func() bool { return get(a) == "one" && get(b) == "one" })

	write(a, o2, "")
	out, err := reload(a)
	if err != nil || !strings.Contains(out, fmt.Sprintf("reloaded (pid %d)", a.cmd.Process.Pid)) {
		t.Fatalf("verge reload -c a.yaml: %v\n%s", err, out)
	}
	if got := get(a); got != "two" {
		t.Errorf("server a after its reload: %q, want \"two\"", got)
	}
	if got := get(b); got != "one" {
		t.Errorf("server b after a's reload: %q, want \"one\" (the reload went to the wrong server)", got)
	}

	// A config that validates but cannot be applied (its second listener's address is taken)
	// is refused by the server, and the command says so with exit status 1.
	write(a, o1, fmt.Sprintf("  - name: clash\n    address: %s\n", b.addr))
	out, err = reload(a)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "reload refused") {
		t.Fatalf("refused reload: %v, output %q; want exit status 1 and \"reload refused\"", err, out)
	}
	if got := get(a); got != "two" {
		t.Errorf("server a after a refused reload: %q, want \"two\"", got)
	}

	// A third server on a's pid file is refused before it binds anything.
	c := &server{cfg: filepath.Join(t.TempDir(), "c.yaml"), addr: freePort(t)}
	pidA, err := filepath.Glob(filepath.Join(runtimeDir, "verge-*.pid"))
	if err != nil || len(pidA) != 2 {
		t.Fatalf("pid files in the runtime directory: %v %v, want two", pidA, err)
	}
	aPID := ""
	for _, f := range pidA {
		if pid, err := readPID(f); err == nil && pid == a.cmd.Process.Pid {
			aPID = f
		}
	}
	write(c, o1, "")
	y, _ := os.ReadFile(c.cfg)
	os.WriteFile(c.cfg, append(y, fmt.Sprintf("pid_file: %q\n", aPID)...), 0o644)
	cmd := exec.Command(verge(t), "run", "-c", c.cfg)
	cmd.Env = env
	out2, err := cmd.CombinedOutput()
	if !errors.As(err, &ee) || !strings.Contains(string(out2), "is in use by another verge (pid "+strconv.Itoa(a.cmd.Process.Pid)+")") {
		t.Fatalf("second server on a's pid file: %v\n%s", err, out2)
	}
}
