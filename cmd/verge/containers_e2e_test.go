package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/verge-edge/verge/internal/testwasm"
)

// containerImage is the image of examples/workers/containers, built by the tests.
const containerImage = "localhost/verge-example-containers:1"

var podmanGlobal = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}

var buildImageOnce struct {
	sync.Once
	err error
	out []byte
}

// needPodman skips without Podman (fails under CI, whose .ci/run installs it) and builds
// the example's image once.
func needPodman(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("podman is not installed (.ci/run installs it)")
		}
		t.Skip("podman is not installed")
	}
	b := &buildImageOnce
	b.Do(func() {
		dir, err := os.MkdirTemp("", "verge-container-image")
		if err != nil {
			b.err = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(testwasm.Root(), "examples", "workers", "containers", "server")
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "server"), ".")
		cmd.Dir, cmd.Env = src, append(os.Environ(), "CGO_ENABLED=0")
		if b.out, b.err = cmd.CombinedOutput(); b.err != nil {
			return
		}
		cf, err := os.ReadFile(filepath.Join(src, "Containerfile"))
		if err != nil {
			b.err = err
			return
		}
		os.WriteFile(filepath.Join(dir, "Containerfile"), cf, 0o644)
		b.out, b.err = exec.Command("podman", append(podmanGlobal, "build", "-q", "-t", containerImage, dir)...).CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("building the example's image: %v\n%s", b.err, b.out)
	}
}

// containerOwner is the owner label of the containers of a Verge on data dir (as
// newContainers derives it).
func containerOwner(t *testing.T, data string) string {
	abs, err := filepath.Abs(data)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:8])
}

// ownedContainers lists the names of the containers labelled with owner.
func ownedContainers(t *testing.T, owner string) []string {
	t.Helper()
	out, err := exec.Command("podman", append(podmanGlobal, "ps", "--all", "--format", "{{.Names}}", "--filter", "label=verge.owner="+owner)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman ps: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// removeOwnedContainers removes owner's containers when t ends, failed or not.
func removeOwnedContainers(t *testing.T, owner string) {
	t.Cleanup(func() {
		out, _ := exec.Command("podman", append(podmanGlobal, "ps", "--all", "--quiet", "--filter", "label=verge.owner="+owner)...).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("podman", append(append(podmanGlobal, "rm", "--force", "-t", "0"), ids...)...).Run()
		}
	})
}

var bootRE = regexp.MustCompile(`^hello from (\w+) \(boot ([0-9a-f]+)\) path (\S+)\n$`)

// containerGet sends a request through Verge and parses the container's answer.
func containerGet(t *testing.T, c *http.Client, addr, path string) (name, boot string) {
	t.Helper()
	code, body, err := doRequest(c, addr, "GET", path, "")
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %q %v", path, code, body, err)
	}
	m := bootRE.FindStringSubmatch(body)
	if m == nil || m[3] != path {
		t.Fatalf("GET %s: %q", path, body)
	}
	return m[1], m[2]
}

// waitContainerState polls the object's container state until it is want.
func waitContainerState(t *testing.T, c *http.Client, addr, name, want string) {
	t.Helper()
	var last string
	waitFor(t, "container of "+name+" to be "+want, 90*time.Second, func() bool {
		_, body, err := doRequest(c, addr, "GET", "/app/"+name+"/__state", "")
		last = body
		return err == nil && body == want
	})
	_ = last
}

func containersConfig(p *proc, data, module string) string {
	return fmt.Sprintf(`listeners: [{address: %s}]
routes: [{worker: containers}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
container_runtime: {oci_runtime: runc, cgroup_manager: cgroupfs, stop_timeout: 2s}
workers:
  - name: containers
    module: %q
    durable_objects: [{binding: APP, class: App}]
    containers:
      - {class: App, image: %s, port: 8080, sleep_after: 2s, max_instances: 4, resources: {cpu: 1, memory: 64MiB}}
`, p.addr, p.pidFile, data, module, containerImage)
}

// newContainersVerge builds examples/workers/containers and runs `verge run` serving it on a
// new data directory, with no container of that directory's owner left from an earlier test.
func newContainersVerge(t *testing.T) (p *proc, data, module, owner string) {
	t.Helper()
	needPodman(t)
	module = testwasm.BuildFile(t, "examples/workers/containers")
	data = filepath.Join(t.TempDir(), "data")
	owner = containerOwner(t, data)
	removeOwnedContainers(t, owner)
	return startContainersVerge(t, data, module), data, module, owner
}

// startContainersVerge runs `verge run` serving examples/workers/containers on data.
func startContainersVerge(t *testing.T, data, module string) *proc {
	t.Helper()
	p := launchVerge(t, func(p *proc) {
		os.WriteFile(p.cfgFile, []byte(containersConfig(p, data, module)), 0o644)
	})
	c := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, "verge to serve the worker", 90*time.Second, func() bool {
		code, _, err := doRequest(c, p.addr, "GET", "/", "")
		return err == nil && code == 404
	})
	return p
}

// TestContainersRun drives examples/workers/containers through `verge run` with Podman:
// the first request to an object starts its container and gets its answer; each object
// has its own; the container sleeps after sleep_after and wakes on the next request, with
// the object told of the exit; a stop stops it; after kill -9 of Verge, the next start
// removes the containers left running.
func TestContainersRun(t *testing.T) {
	p, data, module, owner := newContainersVerge(t)
	c := &http.Client{Timeout: 90 * time.Second}

	name, aliceBoot := containerGet(t, c, p.addr, "/app/alice/one")
	if name != "alice" {
		t.Fatalf("object alice answered as %q", name)
	}
	name, bobBoot := containerGet(t, c, p.addr, "/app/bob/one")
	if name != "bob" || bobBoot == aliceBoot {
		t.Fatalf("object bob: name %q boot %s (alice's %s)", name, bobBoot, aliceBoot)
	}
	if n := len(ownedContainers(t, owner)); n < 1 {
		t.Fatalf("%d containers labelled with the owner, want alice's and bob's", n)
	}
	// The request body goes to the container and its answer streams back, whatever its
	// size (Go's HTTP/1 server drops the rest of a body under 256 KiB once its handler
	// writes: the example's echo must read it first).
	for _, n := range []int{10 << 10, 1 << 20} {
		big := bytes.Repeat([]byte("0123456789abcdef"), n/16)
		code, body, err := doRequest(c, p.addr, "POST", "/app/alice/echo", string(big))
		if err != nil || code != 200 || body != string(big) {
			t.Fatalf("echo of %d bytes: %d, %d bytes, %v", n, code, len(body), err)
		}
	}

	// A WebSocket goes through the object to the container and back.
	wsEcho(t, p.addr, "/app/alice/ws", "hi", "alice: hi")

	// Idle for sleep_after: it sleeps, the object is told, and the next request wakes
	// it (a new boot) with the options of its first start.
	waitContainerState(t, c, p.addr, "alice", "stopped")
	waitFor(t, "alice's object to be told of the sleep", 60*time.Second, func() bool {
		_, body, err := doRequest(c, p.addr, "GET", "/app/alice/__exits", "")
		return err == nil && strings.Contains(body, `"Reason":"sleep"`)
	})
	name, woke := containerGet(t, c, p.addr, "/app/alice/two")
	if name != "alice" || woke == aliceBoot {
		t.Fatalf("after waking: name %q boot %s (before %s)", name, woke, aliceBoot)
	}
	if code, body, err := doRequest(c, p.addr, "POST", "/app/alice/__stop", ""); err != nil || code != 200 || body != "stopped" {
		t.Fatalf("stop: %d %q %v", code, body, err)
	}
	if _, body, _ := doRequest(c, p.addr, "GET", "/app/alice/__state", ""); body != "stopped" {
		t.Fatalf("after stop: state %q", body)
	}

	// The containers' output is in Verge's log with the worker, class and object.
	if log := p.stderr.String(); !regexp.MustCompile(`msg="container output" component=containers worker=containers class=App object=[0-9a-f]{64} line="container of alice listening on 8080`).MatchString(log) {
		t.Fatalf("no output line of alice's container in the log:\n%s", log)
	}

	// kill -9 with a container running: it survives Verge, and the next start removes it.
	containerGet(t, c, p.addr, "/app/carol/one")
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil
	if n := len(ownedContainers(t, owner)); n == 0 {
		t.Fatal("no container left after kill -9: the test proves nothing")
	}
	p2 := startContainersVerge(t, data, module)
	waitFor(t, "the containers left by the killed Verge to be removed", 90*time.Second, func() bool {
		return len(ownedContainers(t, owner)) == 0
	})
	if name, _ := containerGet(t, c, p2.addr, "/app/carol/two"); name != "carol" {
		t.Fatalf("after restart: %q", name)
	}
	// A graceful stop stops every container.
	p2.cmd.Process.Signal(syscall.SIGTERM)
	<-p2.exited
	p2.exited <- nil
	if names := ownedContainers(t, owner); len(names) != 0 {
		t.Fatalf("after a graceful stop: containers %v", names)
	}
}

// TestContainersOrphansConfigWithout kills -9 a Verge with a container running and starts
// the next one on the same data with no containers configured any more: it still removes
// what the first left running.
func TestContainersOrphansConfigWithout(t *testing.T) {
	p, data, module, owner := newContainersVerge(t)
	c := &http.Client{Timeout: 90 * time.Second}
	containerGet(t, c, p.addr, "/app/fred/one")
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.exited <- nil
	if n := len(ownedContainers(t, owner)); n == 0 {
		t.Fatal("no container left after kill -9: the test proves nothing")
	}
	p2 := launchVerge(t, func(p *proc) {
		cfg, _, _ := strings.Cut(containersConfig(p, data, module), "    containers:\n")
		os.WriteFile(p.cfgFile, []byte(cfg), 0o644)
	})
	waitFor(t, "the containers left by the killed Verge to be removed", 90*time.Second, func() bool {
		return len(ownedContainers(t, owner)) == 0
	})
	_ = p2
}

// TestContainersDev serves the containers example with `verge dev` and Podman, from a
// project made by `verge init` holding the example's code and a worker.yaml with a short
// sleep_after: the first request starts the object's container and answers, the next reuses
// it, it sleeps when idle and wakes on the next request; verge dev's exit stops the rest.
func TestContainersDev(t *testing.T) {
	needPodman(t)
	dir := initProjectDir(t, "containers")
	src, err := os.ReadFile(filepath.Join(testwasm.Root(), "examples", "workers", "containers", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "worker.yaml"), []byte(`name: containers
durable_objects: [{binding: APP, class: App}]
containers:
  - {class: App, image: `+containerImage+`, port: 8080, sleep_after: 2s}
`), 0o644)
	data := t.TempDir()
	owner := containerOwner(t, data)
	removeOwnedContainers(t, owner)
	p := newDevProc(t)
	cmd := exec.Command(verge(t), "dev", "--data", data, "--listen", p.addr, "--poll", "100ms",
		"--oci-runtime", "runc", "--cgroup-manager", "cgroupfs", dir)
	cmd.Env = offlineGoEnv()
	p.start(t, cmd)
	c := &http.Client{Timeout: 90 * time.Second}
	waitFor(t, "verge dev to serve the worker", 180*time.Second, func() bool {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("verge dev exited: %v\n%s", err, p.stderr)
		default:
		}
		code, _, err := doRequest(&http.Client{Timeout: 5 * time.Second}, p.addr, "GET", "/", "")
		return err == nil && code == 404
	})
	name, boot := containerGet(t, c, p.addr, "/app/dora/x")
	if name != "dora" {
		t.Fatalf("answered as %q", name)
	}
	containerGet(t, c, p.addr, "/app/emil/x")
	waitContainerState(t, c, p.addr, "dora", "stopped")
	name, woke := containerGet(t, c, p.addr, "/app/dora/y")
	if name != "dora" || woke == boot {
		t.Fatalf("after waking: %q boot %s (before %s)", name, woke, boot)
	}
	p.stop(t, syscall.SIGINT)
	if names := ownedContainers(t, owner); len(names) != 0 {
		t.Fatalf("after verge dev exited: containers %v", names)
	}
}

// TestValidateContainersExample runs `verge validate` on the containers example.
func TestValidateContainersExample(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"validate", "-c", filepath.Join("..", "..", "examples", "containers.yaml")}, &out, &out); code != 0 {
		t.Errorf("verge validate examples/containers.yaml: exit %d\n%s", code, out.String())
	}
}

// wsEcho opens a WebSocket to addr's path through Verge, sends msg and wants the answer want.
func wsEcho(t *testing.T, addr, path, msg, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (status %d)", path, err, status)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != want {
		t.Fatalf("WebSocket answer %q (%v), want %q", got, err, want)
	}
	c.Close(websocket.StatusNormalClosure, "")
}
