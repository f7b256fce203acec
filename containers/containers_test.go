package containers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/containers"
)

// buildServer builds testdata/server as a static executable in dir.
func buildServer(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "server")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test server: %v\n%s", err, out)
	}
	return bin
}

// exits collects OnExit events.
type exits struct {
	mu sync.Mutex
	ch chan containers.Exit
}

func newExits() *exits { return &exits{ch: make(chan containers.Exit, 64)} }

func (e *exits) on(x containers.Exit) { e.ch <- x }

// next waits for the next exit.
func (e *exits) next(t testing.TB) containers.Exit {
	t.Helper()
	select {
	case x := <-e.ch:
		return x
	case <-time.After(60 * time.Second):
		t.Fatal("no exit event within 60s")
		return containers.Exit{}
	}
}

// waitState polls the object's state until it is want.
func waitState(t testing.TB, m *containers.Manager, worker, cls, object string, want containers.State) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := m.State(worker, cls, object)
		if err != nil {
			t.Fatal(err)
		}
		if s == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %v, want %v", s, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t testing.TB, m *containers.Manager, worker, cls, object, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, release, err := m.Acquire(ctx, worker, cls, object)
	if err != nil {
		t.Fatalf("acquire %s: %v", object, err)
	}
	defer release()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		if path == "/exit" || strings.HasPrefix(path, "/exit?") {
			return ""
		}
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lifecycle drives one Manager through start, reuse, sleep, wake, crash and restart,
// limits and shutdown.
func lifecycle(t *testing.T, d containers.Driver, image string, owner string) {
	ev := newExits()
	ctx := context.Background()
	m, err := containers.New(containers.Options{Driver: d, Owner: owner, Logger: testLogger(t), MaxTotal: 2, OnExit: ev.on})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		m.Close(cctx)
	})
	err = m.SetClasses("w", []containers.ClassConfig{{
		Class: "C", Image: image, Port: 8080, Env: map[string]string{"NAME": "cfg"},
		SleepAfter: 300 * time.Millisecond, MaxInstances: 2, Memory: 64 << 20, CPU: 0.5,
	}, {
		Class: "K", Image: image, Port: 8080, SleepAfter: time.Hour,
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Explicit start with options; then requests reuse the same instance.
	if err := m.Start(ctx, "w", "C", "a", containers.StartOptions{Env: map[string]string{"NAME": "a"}, Args: []string{"x1"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := get(t, m, "w", "C", "a", "/"), "hello from a args=[x1]\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Idle: it sleeps, then wakes on the next request with the same options.
	waitState(t, m, "w", "C", "a", containers.Stopped)
	if x := ev.next(t); x.Reason != "sleep" || x.Object != "a" {
		t.Fatalf("exit %+v, want sleep of a", x)
	}
	if got, want := get(t, m, "w", "C", "a", "/"), "hello from a args=[x1]\n"; got != want {
		t.Fatalf("after waking: got %q, want %q", got, want)
	}
	// A second object gets an instance of its own with the class's environment.
	if got, want := get(t, m, "w", "C", "b", "/"), "hello from cfg args=[]\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A third is over the cap (2 per class, 2 in total) while both are in use.
	ctx1, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var releases []func()
	for _, o := range []string{"a", "b"} {
		_, release, err := m.Acquire(ctx1, "w", "C", o)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	_, _, err = m.Acquire(ctx, "w", "C", "c")
	if !errors.Is(err, containers.ErrLimit) {
		t.Fatalf("third instance: err %v, want ErrLimit", err)
	}
	for _, r := range releases {
		r()
	}
	// Stop both; a crash of an instance of a class that does not sleep soon is reported
	// and the instance restarts after the backoff.
	for _, o := range []string{"a", "b"} {
		if err := m.Stop(ctx, "w", "C", o); err != nil {
			t.Fatal(err)
		}
		if s, _ := m.State("w", "C", o); s != containers.Stopped {
			t.Fatalf("after Stop: %v", s)
		}
	}
	get(t, m, "w", "K", "k", "/exit?code=3")
	var x containers.Exit
	for x = ev.next(t); x.Object != "k"; x = ev.next(t) {
	}
	if x.Reason != "crashed" || x.Code != 3 {
		t.Fatalf("exit %+v, want crashed with 3", x)
	}
	waitState(t, m, "w", "K", "k", containers.Running)
	if got, want := get(t, m, "w", "K", "k", "/"), "hello from  args=[]\n"; got != want {
		t.Fatalf("after the restart: got %q, want %q", got, want)
	}
	if err := m.Stop(ctx, "w", "K", "k"); err != nil {
		t.Fatal(err)
	}
	// A class that is not configured.
	if _, _, err := m.Acquire(ctx, "w", "Other", "a"); !errors.Is(err, containers.ErrNoClass) {
		t.Fatalf("unknown class: %v", err)
	}
	// A redeploy stops the worker's instances.
	get(t, m, "w", "C", "a", "/")
	if err := m.SetClasses("w", nil); err != nil {
		t.Fatal(err)
	}
	for x = ev.next(t); x.Reason != "shutdown"; x = ev.next(t) {
	}
	if n := m.Running(); n != 0 {
		t.Fatalf("after redeploy: %d running", n)
	}
}

func TestProcessDriver(t *testing.T) {
	bin := buildServer(t, t.TempDir())
	lifecycle(t, &containers.ProcessDriver{StopTimeout: 5 * time.Second}, bin, "proc-"+t.Name())
}

func TestProcessDriverStartFailure(t *testing.T) {
	ctx := context.Background()
	m, err := containers.New(containers.Options{Driver: &containers.ProcessDriver{}, Owner: "x", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	m.SetClasses("w", []containers.ClassConfig{{Class: "C", Image: "/bin/false", Port: 1}})
	_, _, err = m.Acquire(ctx, "w", "C", "a")
	if err == nil || !strings.Contains(err.Error(), "exited with status 1") {
		t.Fatalf("err %v, want a start failure", err)
	}
	if s, _ := m.State("w", "C", "a"); s != containers.Crashed {
		t.Fatalf("state %v, want crashed", s)
	}
}

// podman returns the Podman driver of the tests, or skips without Podman.
func podman(t testing.TB) *containers.Podman {
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("podman is not installed (.ci/run installs it)")
		}
		t.Skip("podman is not installed")
	}
	return &containers.Podman{Runtime: "runc", CgroupManager: "cgroupfs", StopTimeout: 2 * time.Second}
}

// buildImage builds testdata/server into a FROM scratch image tagged tag.
func buildImage(t testing.TB, p *containers.Podman, tag string) {
	t.Helper()
	dir := t.TempDir()
	buildServer(t, dir)
	os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"), 0o644)
	args := append(globalArgs(p), "build", "-q", "-t", tag, dir)
	if out, err := exec.Command("podman", args...).CombinedOutput(); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
}

func globalArgs(p *containers.Podman) []string {
	return []string{"--runtime", p.Runtime, "--cgroup-manager", p.CgroupManager}
}

// cleanupOwner removes every container of owner when the test ends.
func cleanupOwner(t testing.TB, p *containers.Podman, owner string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		p.RemoveOrphans(ctx, owner)
	})
}

func TestPodmanDriver(t *testing.T) {
	p := podman(t)
	buildImage(t, p, "localhost/verge-containers-test:1")
	owner := fmt.Sprintf("test-%d", os.Getpid())
	cleanupOwner(t, p, owner)
	lifecycle(t, p, "localhost/verge-containers-test:1", owner)
	names, err := p.Running(context.Background(), owner)
	if err != nil || len(names) != 0 {
		t.Fatalf("after Close: containers %v (%v)", names, err)
	}
}

// TestPodmanOrphans leaves a container behind (no Close, as after kill -9) and checks that
// the next Manager of the same owner removes it.
func TestPodmanOrphans(t *testing.T) {
	p := podman(t)
	buildImage(t, p, "localhost/verge-containers-test:1")
	owner := fmt.Sprintf("orphan-%d", os.Getpid())
	cleanupOwner(t, p, owner)
	ctx := context.Background()
	// The first Manager is never closed, as if its process were killed; once "killed" its
	// driver starts nothing (it would restart the container the second one removes).
	dead := &deadDriver{Driver: p}
	m, err := containers.New(containers.Options{Driver: dead, Owner: owner, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.SetClasses("w", []containers.ClassConfig{{Class: "C", Image: "localhost/verge-containers-test:1", Port: 8080}})
	get(t, m, "w", "C", "left", "/")
	names, err := p.Running(ctx, owner)
	if err != nil || len(names) != 1 {
		t.Fatalf("containers %v (%v), want one", names, err)
	}
	// The labels name the worker, class and object.
	out, err := exec.Command("podman", "inspect", "--format", "{{index .Config.Labels \"verge.object\"}} {{index .Config.Labels \"verge.class\"}} {{index .Config.Labels \"verge.worker\"}}", names[0]).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "left C w" {
		t.Fatalf("labels %q (%v)", out, err)
	}
	dead.killed.Store(true)
	m2, err := containers.New(containers.Options{Driver: p, Owner: owner, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.RemoveOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	names, err = p.Running(ctx, owner)
	if err != nil || len(names) != 0 {
		t.Fatalf("after the next start: containers %v (%v), want none", names, err)
	}
}

// deadDriver is a driver that stops starting instances once killed is set.
type deadDriver struct {
	containers.Driver
	killed atomic.Bool
}

func (d *deadDriver) Start(ctx context.Context, s *containers.Spec) (containers.Process, error) {
	if d.killed.Load() {
		return nil, errors.New("killed")
	}
	return d.Driver.Start(ctx, s)
}

// blockingOrphans is a driver whose RemoveOrphans waits for its context.
type blockingOrphans struct{ containers.ProcessDriver }

func (*blockingOrphans) RemoveOrphans(ctx context.Context, _ string) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestCloseEndsOrphanRemoval: Close does not wait out a removal of orphans that hangs (a
// stuck podman): it cancels it.
func TestCloseEndsOrphanRemoval(t *testing.T) {
	m, err := containers.New(containers.Options{Driver: &blockingOrphans{}, Owner: "o", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m.RemoveOrphansInBackground()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
