package worker_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// containerWorker deploys worker/testdata/containers with class C's container run by the
// process driver (containers/testdata/server); exits receives the containers' exits.
// deploy deploys it again with the class's sleep_after changed.
func containerWorker(t testing.TB) (*worker.Worker, *containers.Manager, chan containers.Exit, func(time.Duration)) {
	return containerWorkerRouted(t, nil)
}

// containerWorkerRouted is containerWorker with Durable Object calls going through router
// when it is not nil (as in a cluster).
func containerWorkerRouted(t testing.TB, router worker.ObjectRouter) (*worker.Worker, *containers.Manager, chan containers.Exit, func(time.Duration)) {
	bin := filepath.Join(t.TempDir(), "server")
	cmd := exec.Command("go", "build", "-o", bin, "../containers/testdata/server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test server: %v\n%s", err, out)
	}
	var reg *worker.Registry
	exits := make(chan containers.Exit, 16)
	m, err := containers.New(containers.Options{Driver: &containers.ProcessDriver{StopTimeout: 5 * time.Second}, Owner: "worker-test",
		OnExit: func(x containers.Exit) {
			select {
			case exits <- x:
			default:
			}
			reg.ContainerExited(context.Background(), x)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m.Close(ctx)
	})
	e := newEnv(t, t.TempDir(), worker.Services{Containers: m, Router: router})
	reg = e.reg
	cfg := func(sleep time.Duration) worker.Config {
		return worker.Config{
			Name:       "ct",
			Module:     testwasm.Build(t, "worker/testdata/containers"),
			Durable:    map[string]worker.DurableBinding{"C": {Class: "C"}, "D": {Class: "D"}, "F": {Class: "F"}},
			Containers: []containers.ClassConfig{{Class: "C", Image: bin, Port: 8080, SleepAfter: sleep}, {Class: "F", Image: bin, Port: 8080, SleepAfter: sleep}},
		}
	}
	w := e.deploy(t, cfg(time.Hour))
	return w, m, exits, func(d time.Duration) { e.deploy(t, cfg(d)) }
}

// TestContainerOps drives the container operations from Durable Objects with the process
// driver, and what a hostile worker tries: a container outside an object, a class without
// one, a plain subrequest to a container's loopback port, too many variables.
func TestContainerOps(t *testing.T) {
	w, m, exits, deploy := containerWorker(t)
	get := func(target string) string {
		t.Helper()
		rec, err := serve(t, w, "GET", target, "")
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		return rec.body.String()
	}
	// expect checks the answers to GETs of the targets in order: equal to want, or
	// containing it when contains.
	type step struct {
		target, want string
		contains     bool
	}
	expect := func(steps ...step) {
		t.Helper()
		for _, s := range steps {
			got := get(s.target)
			if s.contains && !strings.Contains(got, s.want) || !s.contains && got != s.want {
				t.Fatalf("GET %s: %q, want %q", s.target, got, s.want)
			}
		}
	}
	expect(
		step{"/plain/fetch", "error: containers are reached from a Durable Object", true}, // outside an object
		step{"/obj/D/x/fetch", "error: class D has no container", true},
		step{"/obj/C/a/state", "stopped", false}, // before start
		step{"/obj/C/a/start", "ok", false},
		step{"/obj/C/a/fetch", "hello from a args=[a1]\n", false},
		step{"/obj/C/a/state", "running", false},
		// Another object gets its own instance, started by its first fetch.
		step{"/obj/C/b/fetch", "hello from  args=[]\n", false},
		// A class defined with sdk.DefineContainer passes requests to its container; a
		// pool spreads them over its objects.
		step{"/obj/F/f1/anything", "hello from  args=[]\n", false},
		step{"/pool", "hello from  args=[]\n", false},
	)
	// The container's port is not reachable with a plain subrequest.
	id := get("/obj/C/a/id")
	addr, release, err := m.Acquire(context.Background(), "ct", "C", id)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if got := get("/obj/C/a/steal?addr=" + addr); !strings.Contains(got, "refused") {
		t.Fatalf("plain fetch of the container's port %s: %q", addr, got)
	}
	expect(
		step{"/obj/C/c/hugeenv", "exceed 64", true}, // 100 variables
		step{"/obj/C/a/stop", "ok", false},
		step{"/obj/C/a/state", "stopped", false},
	)
	select {
	case x := <-exits:
		if x.Reason != "stopped" || x.Object != id {
			t.Fatalf("exit %+v", x)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no exit event")
	}
	// A redeploy with another container configuration stops the running instances (b's);
	// the next request starts a new one.
	deploy(2 * time.Hour)
	for shutdown := false; !shutdown; {
		select {
		case x := <-exits:
			shutdown = x.Reason == "shutdown"
		case <-time.After(60 * time.Second):
			t.Fatal("no shutdown exit after the redeploy")
		}
	}
	expect(step{"/obj/C/b/state", "stopped", false}, step{"/obj/C/b/fetch", "hello from  args=[]\n", false})
}

// upgradeRecorder is a recorder that can switch protocols (the client's connection of a
// WebSocket handshake); no test here gets that far.
type upgradeRecorder struct{ recorder }

func (*upgradeRecorder) Upgrade(*message.Response) (io.ReadWriteCloser, error) {
	return nil, errors.New("not switched in this test")
}

// TestContainerWebSocketHandshakesAreSubrequests: a WebSocket handshake an object sends to
// its container while the client's own is pending counts against the subrequest limit like
// any container fetch; handshakes the container refuses cannot be repeated without end.
func TestContainerWebSocketHandshakesAreSubrequests(t *testing.T) {
	w, _, _, _ := containerWorker(t)
	req := &message.Request{Method: "GET", Target: "/obj/C/w/wsloop", Authority: "example.com", Proto: message.HTTP11}
	req.Header.Add("Upgrade", "websocket")
	req.Header.Add("Connection", "Upgrade")
	req.Header.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Add("Sec-WebSocket-Version", "13")
	rec := &upgradeRecorder{}
	if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// The loop stops at the limit (50), far below its 1000 tries.
	if got := rec.body.String(); !strings.HasPrefix(got, "50 handshakes, then:") || !strings.Contains(got, "too many subrequests") {
		t.Fatalf("%s", got)
	}
}
