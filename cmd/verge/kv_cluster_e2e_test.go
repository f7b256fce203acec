package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestClusterKV runs `verge run` with an embedded one-node cluster and a worker bound to a
// KV namespace: the namespace is a JetStream bucket that `verge kv -c` and `verge kv --nats`
// read and write as well, and what one writes the other reads.
func TestClusterKV(t *testing.T) {
	counter := testwasm.BuildFile(t, "examples/workers/counter")
	natsAddr := freePort(t)
	var cfgFile string
	p := launchVerge(t, func(p *proc) {
		cfgFile = p.cfgFile
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
cluster:
  node: n1
  embedded: {listen: %q}
routes: [{name: w, worker: app}]
workers:
  - name: app
    module: %q
    kv: [{binding: KV, namespace: app.kv}]
    durable_objects: [{binding: COUNTER, class: Counter}]
    limits: {cpu_time: 10s}
`, p.addr, p.pidFile, filepath.Join(p.dir, "data"), natsAddr, counter)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	c := &http.Client{Timeout: 15 * time.Second}
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	kvcmd := func(args ...string) (string, error) {
		out, err := exec.Command(verge(t), append([]string{"kv"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// The worker writes; it answers once JetStream acknowledged the write.
	waitFor(t, "the worker to store a key in the cluster", 60*time.Second, func() bool {
		code, _ := do("PUT", "/kv/from-worker", "written by the worker")
		return code == 204 || code == 200
	})
	if out, err := kvcmd("get", "-c", cfgFile, "app.kv", "from-worker"); err != nil || out != "written by the worker" {
		t.Fatalf("verge kv get -c: %q %v\n%s", out, err, p.stderr)
	}
	if out, err := kvcmd("get", "--nats", "nats://"+natsAddr, "app.kv", "from-worker"); err != nil || out != "written by the worker" {
		t.Fatalf("verge kv get --nats: %q %v", out, err)
	}
	// The command writes; the worker reads it from its node's cache once the watch applied it.
	if out, err := kvcmd("put", "-c", cfgFile, "app.kv", "from-cli", "written by verge kv", "--metadata", `{"by":"cli"}`); err != nil {
		t.Fatalf("verge kv put -c: %q %v", out, err)
	}
	waitFor(t, "the worker to read the command's write", 30*time.Second, func() bool {
		code, body := do("GET", "/kv/from-cli", "")
		return code == 200 && body == "written by verge kv"
	})
	out, err := kvcmd("list", "-c", cfgFile, "app.kv")
	if err != nil || !strings.Contains(out, `"name": "from-cli"`) || !strings.Contains(out, `"by": "cli"`) || !strings.Contains(out, `"name": "from-worker"`) {
		t.Fatalf("verge kv list -c: %s %v", out, err)
	}
	if out, err := kvcmd("namespaces", "-c", cfgFile); err != nil || out != "app.kv\n" {
		t.Fatalf("verge kv namespaces -c: %q %v", out, err)
	}
	if out, err := kvcmd("delete", "-c", cfgFile, "app.kv", "from-cli"); err != nil {
		t.Fatalf("verge kv delete -c: %q %v", out, err)
	}
	waitFor(t, "the worker to see the delete", 30*time.Second, func() bool {
		code, _ := do("GET", "/kv/from-cli", "")
		return code == 404
	})
	if out, err := kvcmd("get", "-c", cfgFile, "absent.ns", "k"); err == nil || !strings.Contains(out, `namespace "absent.ns" not found in the cluster`) {
		t.Fatalf("get from a missing namespace: %q %v", out, err)
	}
	// Nothing answers on this address: the command fails with a clear error, not a hang.
	if out, err := kvcmd("get", "--nats", "nats://"+freePort(t), "app.kv", "k"); err == nil || !strings.Contains(out, "cluster unavailable") {
		t.Fatalf("get from an unreachable cluster: %q %v", out, err)
	}
	// No KV file was written: the namespace lives in the cluster only.
	if _, err := os.Stat(filepath.Join(p.dir, "data", "kv", "app.kv.sqlite")); err == nil {
		t.Fatal("the worker's KV namespace was written to SQLite in a cluster")
	}
}
