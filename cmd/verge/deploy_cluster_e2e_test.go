package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/internal/testwasm"
)

// clusterNode is one `verge run` of a three-node test cluster.
type clusterNode struct {
	t       *testing.T
	name    string
	dir     string
	cfgFile string
	addr    string // proxy listener
	admin   string // admin API
	nats    string // embedded NATS client address
	stderr  *logFile
	cmd     *exec.Cmd
	exited  chan error
}

func (n *clusterNode) writeConfig(module string, routes []string, clusterListen string) {
	n.t.Helper()
	y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
routes: [{name: w, worker: app}]
workers:
  - name: app
    module: %q
    kv: [{binding: KV}]
    durable_objects: [{binding: COUNTER, class: Counter}]
    limits: {cpu_time: 10s}
cluster:
  node: %s
  embedded:
    listen: %q
    cluster_listen: %q
    routes: [%s]
`, n.addr, n.admin, filepath.Join(n.dir, "verge.pid"), filepath.Join(n.dir, "data"), module, n.name, n.nats, clusterListen, strings.Join(routes, ", "))
	if err := os.WriteFile(n.cfgFile, []byte(y), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *clusterNode) start() {
	n.t.Helper()
	n.cmd = exec.Command(verge(n.t), "run", "-c", n.cfgFile)
	n.cmd.Stderr = n.stderr.f
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(n.cmd, n.exited)
}

func (n *clusterNode) stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second): // a failure guard
		n.cmd.Process.Kill()
		<-n.exited
	}
	n.cmd = nil
}

// waitServing waits until the node's proxy answers with the module named want and its admin
// API answers.
func (n *clusterNode) waitServing(want string) {
	n.t.Helper()
	waitFor(n.t, n.name+" to serve "+want, 90*time.Second, func() bool {
		if flavor(n.get("/kv/x")) != want {
			return false
		}
		code, _ := n.api("GET", "/healthz", "", nil)
		return code == 200
	})
}

// get sends a request to the proxy listener and returns the status and body.
func (n *clusterNode) get(path string) (int, string) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + n.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// api sends a request to the admin API.
func (n *clusterNode) api(method, path, ctype string, body []byte) (int, []byte) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.admin+path, bytes.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	// A deploy compiles on this node and waits for the others: a guard, not a limit.
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// worker returns the app worker's entry of GET /workers.
func (n *clusterNode) worker() admin.WorkerStatus {
	n.t.Helper()
	code, b := n.api("GET", "/workers", "", nil)
	var list []admin.WorkerStatus
	if code != 200 || json.Unmarshal(b, &list) != nil || len(list) != 1 {
		n.t.Fatalf("%s GET /workers: %d %s", n.name, code, b)
	}
	return list[0]
}

// flavor names the module that answered: the hello worker greets every path; the counter
// worker answers GET /kv/KEY from its KV namespace (404 when absent).
func flavor(code int, body string) string {
	switch {
	case code == 200 && strings.HasPrefix(body, "hello from "):
		return "hello"
	case code == 404:
		return "counter"
	}
	return fmt.Sprintf("%d %q", code, body)
}

// withCustomSection returns module with an extra custom section: another module (another
// version id) that behaves the same.
func withCustomSection(module []byte, payload string) []byte {
	name := "verge-test"
	content := append([]byte{byte(len(name))}, name...)
	content = append(content, payload...)
	out := append([]byte{}, module...)
	out = append(out, 0, byte(len(content))) // section id 0, size (< 128)
	return append(out, content...)
}

// TestClusterDeployServesEverywhere is issue 14's deployment test, on three `verge run`
// processes with embedded JetStream: a worker deployed through node 3's admin API serves on
// node 1; a bad module is refused and not stored; a reload that does not touch the module
// keeps the cluster version; a restarted node starts with it; a changed configured module
// wins on its node; dropping the deployment returns the nodes to their configured module.
func TestClusterDeployServesEverywhere(t *testing.T) {
	helloPath := testwasm.BuildFile(t, "examples/workers/hello")
	counter := testwasm.Build(t, "examples/workers/counter")
	hello2Path := filepath.Join(t.TempDir(), "hello2.wasm")
	if err := os.WriteFile(hello2Path, withCustomSection(helloModule(t, helloPath), "two"), 0o644); err != nil {
		t.Fatal(err)
	}
	ports := make([]string, 0, 12)
	for range 12 {
		ports = append(ports, freePort(t))
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, ports[9+i])
	}
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		dir := t.TempDir()
		n := &clusterNode{t: t, name: fmt.Sprintf("n%d", i+1), dir: dir, cfgFile: filepath.Join(dir, "verge.yaml"),
			addr: ports[3*i], admin: ports[3*i+1], nats: ports[3*i+2], stderr: newLogFile(t)}
		n.writeConfig(helloPath, routes, routes[i])
		nodes[i] = n
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
			if t.Failed() {
				t.Logf("%s stderr:\n%s", n.name, n.stderr.String())
			}
		}
	})
	for _, n := range nodes {
		n.start()
	}
	for _, n := range nodes {
		n.waitServing("hello")
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	helloID := n1.worker().Version

	// A module that does not compile is refused by the deploying node and not stored.
	if code, b := n3.api("PUT", "/workers/app", "application/wasm", []byte("\x00asm\x01\x00\x00\x00garbage")); code != 422 {
		t.Fatalf("bad module: got %d %s, want 422", code, b)
	}
	nc, err := nats.Connect("nats://"+n1.nats, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	storedInfo := func() (*jetstream.ObjectInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		obs, err := js.ObjectStore(ctx, deployBucket)
		if err != nil {
			return nil, err
		}
		return obs.GetInfo(ctx, "app")
	}
	var info *jetstream.ObjectInfo
	waitFor(t, "the deployments bucket", 60*time.Second, func() bool {
		info, err = storedInfo()
		return err == nil || errors.Is(err, jetstream.ErrObjectNotFound)
	})
	if !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("after the refused deploy: stored %+v, %v; want nothing stored", info, err)
	}
	if w := n1.worker(); w.Source != "config" || w.ClusterVersion != "" {
		t.Fatalf("n1 before any deploy: %+v, want source config and no cluster version", w)
	}

	// The test: deployed on node 3, served by node 1.
	code, b := n3.api("PUT", "/workers/app", "application/wasm", counter)
	if code != 200 {
		t.Fatalf("deploy on n3: %d %s", code, b)
	}
	t.Logf("deploy answer: %s", b)
	var st admin.WorkerStatus
	if err := json.Unmarshal(b, &st); err != nil || st.Cluster == nil {
		t.Fatalf("deploy answer %s: %v (want a cluster object)", b, err)
	}
	c := st.Cluster
	if !c.Stored || c.Version != st.Version || c.Members != 3 || c.Nodes < 1 || c.Nodes+len(c.NotRunning) != c.Members {
		t.Fatalf("deploy answer's cluster: %+v, want stored, 3 members, counted nodes", c)
	}
	counterID := st.Version
	if info, err := storedInfo(); err != nil || info.Metadata[metaVersion] != counterID || info.Metadata[metaNode] != "n3" ||
		info.Metadata[metaConfigured] != sha256Hex(helloModule(t, helloPath)) {
		t.Fatalf("stored object: %+v, %v", info, err)
	}
	for _, n := range []*clusterNode{n1, n2} {
		waitFor(t, n.name+" to serve the cluster version", 60*time.Second, func() bool { return flavor(n.get("/kv/x")) == "counter" })
		if w := n.worker(); w.Version != counterID || w.Source != "cluster" || w.ClusterVersion != counterID {
			t.Fatalf("%s GET /workers: %+v, want version %s from the cluster", n.name, w, counterID)
		}
	}

	// A reload that does not touch the module keeps the cluster version.
	if code, b := n1.api("POST", "/reload", "application/json", nil); code != 200 {
		t.Fatalf("reload n1: %d %s", code, b)
	}
	if got := flavor(n1.get("/kv/x")); got != "counter" {
		t.Fatalf("n1 after a reload: %s, want the cluster version (counter)", got)
	}
	if w := n1.worker(); w.Version != counterID || w.Source != "cluster" {
		t.Fatalf("n1 after a reload: %+v", w)
	}

	// A restarted node serves the cluster version once the cluster answers.
	n2.stop()
	n2.start()
	n2.waitServing("counter")
	if w := n2.worker(); w.Version != counterID || w.Source != "cluster" {
		t.Fatalf("restarted n2: %+v", w)
	}

	// A changed configured module wins on its node (and is not pushed to the others).
	n1.writeConfig(hello2Path, routes, routes[0])
	if code, b := n1.api("POST", "/reload", "application/json", nil); code != 200 {
		t.Fatalf("reload n1 with a new module: %d %s", code, b)
	}
	w := n1.worker()
	if got := flavor(n1.get("/kv/x")); got != "hello" || w.Version == helloID || w.Version == counterID || w.Source != "config" || w.ClusterVersion != counterID || w.ClusterNote == "" {
		t.Fatalf("n1 after its module changed: answers %s, %+v; want hello2 from config", got, w)
	}
	hello2ID := w.Version
	if code, b := n1.api("POST", "/reload", "application/json", nil); code != 200 || n1.worker().Version != hello2ID {
		t.Fatalf("second reload of n1: %d %s, version %s, want %s", code, b, n1.worker().Version, hello2ID)
	}
	if got := flavor(n3.get("/kv/x")); got != "counter" {
		t.Fatalf("n3 after n1's config changed: %s, want counter", got)
	}

	// Dropping the deployment returns every node to its configured module.
	code, b = n2.api("DELETE", "/workers/app/deployment", "application/json", nil)
	if code != 200 {
		t.Fatalf("drop: %d %s", code, b)
	}
	t.Logf("drop answer: %s", b)
	for _, n := range []*clusterNode{n2, n3} {
		waitFor(t, n.name+" to serve its configured module again", 60*time.Second, func() bool { return flavor(n.get("/kv/x")) == "hello" })
		if w := n.worker(); w.Version != helloID || w.Source != "config" || w.ClusterVersion != "" {
			t.Fatalf("%s after the drop: %+v", n.name, w)
		}
	}
	if w := n1.worker(); w.Version != hello2ID {
		t.Fatalf("n1 after the drop: %+v, want its configured %s", w, hello2ID)
	}
	if code, b := n2.api("DELETE", "/workers/app/deployment", "application/json", nil); code != 404 {
		t.Fatalf("second drop: %d %s, want 404", code, b)
	}

	// A module put into the store behind Verge's back whose content does not match its
	// metadata is refused by every node: the old version keeps serving.
	hello2 := helloModule(t, hello2Path)
	sum := sha256Hex(hello2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs, err := js.ObjectStore(ctx, deployBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "app", Metadata: map[string]string{
		metaVersion: sum[:12], metaSHA256: sum, metaNode: "intruder", metaDeployed: time.Now().Format(time.RFC3339Nano),
		metaConfigured: sha256Hex(helloModule(t, helloPath)),
	}}, bytes.NewReader(counter)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 to refuse the tampered module", 60*time.Second, func() bool {
		return strings.Contains(n3.worker().ClusterNote, "SHA-256")
	})
	if got, w := flavor(n3.get("/kv/x")), n3.worker(); got != "hello" || w.Version != helloID || w.Source != "config" {
		t.Fatalf("n3 after a tampered put: answers %s, %+v; want its configured module", got, w)
	}
}
