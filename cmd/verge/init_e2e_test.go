package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// offlineGoEnv is the environment of a machine with only Go and the verge binary: the go
// command can reach no module proxy, download no toolchain and see no workspace. A project
// that builds in it needs nothing but its own files.
func offlineGoEnv(extra ...string) []string {
	env := append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=-mod=mod")
	return append(env, extra...)
}

// runVerge runs the verge binary to completion and returns its exit code and output.
func runVerge(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(verge(t), args...)
	cmd.Dir = dir
	cmd.Env = offlineGoEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("verge %s: %v", strings.Join(args, " "), err)
	return 0, "", ""
}

func initProjectDir(t *testing.T, name string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	code, stdout, stderr := runVerge(t, "", append(append([]string{"init"}, args...), dir)...)
	if code != 0 {
		t.Fatalf("verge init: exit %d\n%s%s", code, stdout, stderr)
	}
	return dir
}

// serveWhenReady waits until GET path on addr answers 200 (not a building page) and returns
// the body, failing if the process exits first.
func serveWhenReady(t *testing.T, p *devProc, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	var body string
	waitFor(t, "the worker to serve", 3*time.Minute, func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("verge exited: %v\n%s", err, p.stderr)
		default:
		}
		code, b, err := p.do(c, "GET", path, "")
		body = b
		return err == nil && code == 200
	})
	return body
}

// TestInitHelloBuildsOfflineAndServesWithRun: `verge init` writes a project that builds for
// wasip1 with GOPROXY=off (no module proxy, no network) and whose verge.yaml `verge run`
// accepts and serves: the reported failure was that the SDK module could not be resolved
// outside the repository.
func TestInitHelloBuildsOfflineAndServesWithRun(t *testing.T) {
	dir := initProjectDir(t, "hello")
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "hello.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, ".")
	build.Dir = dir
	// An empty module cache too: nothing the build needs may come from outside the project.
	build.Env = offlineGoEnv("GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOMODCACHE="+t.TempDir())
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("offline build of the scaffold: %v\n%s", err, b)
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no module built: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "go.mod")); !bytes.Equal(after, gomod) {
		t.Fatalf("the build changed go.mod:\n%s", after)
	}

	// The generated config, on a free port, with the admin API off and the pid file in the
	// test's directory. `verge run` builds the package in the default (read-only) module mode.
	cfg := filepath.Join(dir, "verge.yaml")
	y, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := newDevProc(t)
	s := strings.Replace(string(y), "address: 127.0.0.1:8080\n", "address: "+p.addr+"\n", 1)
	s = strings.Replace(s, "admin:\n  address: 127.0.0.1:9901\n", "admin: {disabled: true}\n", 1)
	s += fmt.Sprintf("pid_file: %q\n", filepath.Join(t.TempDir(), "verge.pid"))
	if !strings.Contains(s, p.addr) || !strings.Contains(s, "disabled: true") {
		t.Fatalf("verge.yaml does not have the expected listener and admin lines:\n%s", y)
	}
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, o, e := runVerge(t, dir, "validate", "-c", "verge.yaml"); code != 0 {
		t.Fatalf("verge validate of the generated config: exit %d\n%s%s", code, o, e)
	}
	run := exec.Command(verge(t), "run", "-c", "verge.yaml")
	run.Dir = dir
	run.Env = append(os.Environ(), "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=")
	p.start(t, run)
	if got := serveWhenReady(t, p, "/some/path"); got != "hello from hello: /some/path\n" {
		t.Fatalf("GET /some/path through verge run: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".verge")); err != nil {
		t.Errorf("verge run keeps no data next to the generated config: %v", err)
	}
}

// TestInitCounterServesWithDev: the counter template's Durable Object and KV namespace work
// through `verge dev`, built offline.
func TestInitCounterServesWithDev(t *testing.T) {
	dir := initProjectDir(t, "tally", "--template", "counter", "--module", "example.com/tally")
	p := newDevProc(t)
	dev := exec.Command(verge(t), "dev", "--listen", p.addr, "--poll", "100ms")
	dev.Dir = dir
	dev.Env = offlineGoEnv()
	p.start(t, dev)
	if got := serveWhenReady(t, p, "/counter/visits"); got != "1" {
		t.Fatalf("first increment: %q, want 1", got)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	if code, body, err := p.do(c, "GET", "/counter/visits", ""); code != 200 || body != "2" {
		t.Fatalf("second increment: %d %q %v, want 200 2", code, body, err)
	}
	if code, _, err := p.do(c, "PUT", "/kv/greeting", "hi there"); code != 204 {
		t.Fatalf("KV put: %d %v", code, err)
	}
	if code, body, err := p.do(c, "GET", "/kv/greeting", ""); code != 200 || body != "hi there" {
		t.Fatalf("KV get: %d %q %v", code, body, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".verge")); err != nil {
		t.Errorf("verge dev keeps no data in the project's .verge: %v", err)
	}
}

// TestDevInitScaffoldsOnlyAMissingProject: `verge dev --init DIR` writes a hello project into
// a new DIR and serves it; run again on the edited project, it keeps the edits.
func TestDevInitScaffoldsOnlyAMissingProject(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	p := launchDev(t, t.TempDir(), dir, "--init")
	if got := serveWhenReady(t, p, "/"); got != "hello from fresh: /\n" {
		t.Fatalf("GET / after dev --init: %q", got)
	}
	p.stop(t, syscall.SIGTERM)

	main := filepath.Join(dir, "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(src, []byte(`"hello from fresh: "`), []byte(`"edited: "`), 1)
	if bytes.Equal(edited, src) {
		t.Fatalf("main.go has no greeting to edit:\n%s", src)
	}
	os.WriteFile(main, edited, 0o644)
	p = launchDev(t, t.TempDir(), dir, "--init")
	if got := serveWhenReady(t, p, "/x"); got != "edited: /x\n" {
		t.Fatalf("GET /x after a second dev --init: %q; want the edited worker", got)
	}
}

// TestInitCommandRefusesToOverwrite: `verge init` into a directory holding one of its files
// exits 1 naming the file and writes nothing; --force overwrites; a bad template is a usage
// error (exit 2); --sdk-only refreshes the SDK and leaves main.go alone.
func TestInitCommandRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	gomod := filepath.Join(dir, "go.mod")
	os.WriteFile(gomod, []byte("module mine\n"), 0o644)
	code, _, stderr := runVerge(t, "", "init", dir)
	if code != 1 || !strings.Contains(stderr, gomod+" already exists") || !strings.Contains(stderr, "--force") {
		t.Fatalf("verge init over go.mod: exit %d, stderr %q; want 1 naming %s", code, stderr, gomod)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("a refused verge init wrote files: %v", ents)
	}
	if code, _, stderr := runVerge(t, "", "init", "--template", "nope", dir); code != 2 || !strings.Contains(stderr, `template "nope"`) {
		t.Fatalf("verge init --template nope: exit %d, %q; want 2", code, stderr)
	}
	if code, _, stderr := runVerge(t, "", "init", "--force", dir); code != 0 {
		t.Fatalf("verge init --force: exit %d\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(gomod); !bytes.Contains(b, []byte("replace github.com/verge-edge/verge => ./verge-sdk")) {
		t.Fatalf("--force did not write go.mod:\n%s", b)
	}

	main := filepath.Join(dir, "main.go")
	os.WriteFile(main, []byte("package main // mine\n"), 0o644)
	sdk := filepath.Join(dir, "verge-sdk", "sdk", "go", "sdk.go")
	os.WriteFile(sdk, []byte("package sdk // stale\n"), 0o644)
	if code, stdout, stderr := runVerge(t, dir, "init", "--sdk-only"); code != 0 || !strings.Contains(stdout, "wrote the SDK") {
		t.Fatalf("verge init --sdk-only: exit %d\n%s%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(sdk); bytes.Contains(b, []byte("stale")) {
		t.Fatal("--sdk-only left the stale SDK")
	}
	if b, _ := os.ReadFile(main); string(b) != "package main // mine\n" {
		t.Fatal("--sdk-only changed main.go")
	}
}
