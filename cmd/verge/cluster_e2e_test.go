package main

import (
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/internal/testwasm"
)

// clusterProc is one `verge run` of a three-node cluster with embedded JetStream.
type clusterProc struct {
	t      *testing.T
	i      int
	cmd    *exec.Cmd
	cfg    string
	pid    string // pid file
	addr   string // public listener
	admin  string
	nats   string // the embedded NATS server's client address
	stderr *logFile
	exited chan struct{} // closed when the started process exits
}

// clusterProcs writes the configs of an n-node cluster whose nodes run worker (a compiled
// module) on every path, and starts them.
type clusterProcs struct {
	t     *testing.T
	procs []*clusterProc
}

func startClusterProcs(t *testing.T, n int, module string) *clusterProcs {
	t.Helper()
	return startClusterProcsWith(t, n, module, `
    kv: [{binding: KV, namespace: counter-kv}]
    durable_objects: [{binding: COUNTER, class: Counter}]`)
}

// startClusterProcsWith is startClusterProcs with the worker's bindings given as YAML
// lines of the worker's entry.
func startClusterProcsWith(t *testing.T, n int, module, bindings string) *clusterProcs {
	t.Helper()
	ports := clustertest.FreePorts(t, 4*n)
	var routes []string
	for i := 0; i < n; i++ {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[n+i]))
	}
	cs := &clusterProcs{t: t}
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		p := &clusterProc{t: t, i: i, cfg: filepath.Join(dir, "verge.yaml"), pid: filepath.Join(dir, "verge.pid"),
			addr: fmt.Sprintf("127.0.0.1:%d", ports[2*n+i]), admin: fmt.Sprintf("127.0.0.1:%d", ports[3*n+i]),
			nats: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {address: %q}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
shutdown: {grace_period: 2s}
cluster:
  node: node%d
  embedded:
    listen: "127.0.0.1:%d"
    cluster_listen: %q
    routes: [%s]
routes: [{name: w, worker: app}]
workers:
  - name: app
    module: %q%s
`, p.addr, p.admin, filepath.Join(dir, "verge.pid"), filepath.Join(dir, "data"), i+1, ports[i], routes[i], strings.Join(routes, ", "), module, bindings)
		if !strings.Contains(bindings, "limits:") {
			y += "    limits: {cpu_time: 10s}\n"
		}
		if err := os.WriteFile(p.cfg, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		cs.procs = append(cs.procs, p)
		p.start()
	}
	t.Cleanup(func() {
		for _, p := range cs.procs {
			p.stop()
		}
	})
	return cs
}

func (p *clusterProc) start() {
	p.stderr = newLogFile(p.t)
	p.exited = make(chan struct{})
	p.cmd = exec.Command(verge(p.t), "run", "-c", p.cfg)
	p.cmd.Stderr = p.stderr.f
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
}

// kill stops the process with SIGKILL: no drain, no goodbye to the cluster.
func (p *clusterProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *clusterProc) stop() {
	// An upgrade may have replaced the process started here: stop the pid file's too.
	if pid, err := readPID(p.pid); err == nil && pid != p.cmd.Process.Pid {
		syscall.Kill(pid, syscall.SIGINT)
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if p.t.Failed() {
		p.t.Logf("node%d stderr:\n%s", p.i+1, p.stderr.String())
	}
}

var clusterClient = &http.Client{Timeout: 10 * time.Second}

func (p *clusterProc) do(method, path, body string) (int, string, error) {
	return doRequest(clusterClient, p.addr, method, path, body)
}

// waitKV waits until every node answers a KV write: the cluster has formed and the
// buckets exist.
func (cs *clusterProcs) waitKV(t *testing.T) {
	t.Helper()
	for _, p := range cs.procs {
		key := fmt.Sprintf("/kv/ready-%d", p.i)
		waitFor(t, fmt.Sprintf("node%d to write KV", p.i+1), 90*time.Second, func() bool {
			code, _, _ := p.do("PUT", key, "ok")
			return code == 204
		})
	}
}

// TestClusterKVAcrossNodesE2E: a KV write through node 1 is read through nodes 2 and 3.
func TestClusterKVAcrossNodesE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("three verge processes")
	}
	cs := startClusterProcs(t, 3, testwasm.BuildFile(t, "examples/workers/counter"))
	cs.waitKV(t)
	if code, body, err := cs.procs[0].do("PUT", "/kv/greeting", "hello from node1"); code != 204 {
		t.Fatalf("put: %d %q %v", code, body, err)
	}
	for _, p := range cs.procs[1:] {
		waitFor(t, fmt.Sprintf("node%d to read the write", p.i+1), 30*time.Second, func() bool {
			code, body, _ := p.do("GET", "/kv/greeting", "")
			return code == 200 && body == "hello from node1"
		})
	}

	// Many writes through one node at once, read back through that node (its own cache) and
	// the others: the writing node once cached the worker's buffer instead of a copy, and
	// served later requests' bytes under earlier keys (once the guest's memory was reused:
	// 8 KiB values make its garbage collector run within the writes).
	const writers, perWriter = 4, 100
	value := func(k string) string { return k + ":" + strings.Repeat("v", 8<<10) }
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				k := fmt.Sprintf("many-%d-%d", w, i)
				if code, body, err := cs.procs[0].do("PUT", "/kv/"+k, value(k)); code != 204 {
					t.Errorf("put %s: %d %q %v", k, code, body, err)
				}
			}
		}()
	}
	wg.Wait()
	for _, p := range cs.procs {
		for w := 0; w < writers; w++ {
			for i := 0; i < perWriter; i++ {
				k := fmt.Sprintf("many-%d-%d", w, i)
				waitFor(t, fmt.Sprintf("node%d to read %s", p.i+1, k), 30*time.Second, func() bool {
					code, _, _ := p.do("GET", "/kv/"+k, "")
					return code == 200
				})
				if code, body, err := p.do("GET", "/kv/"+k, ""); code != 200 || body != value(k) {
					t.Fatalf("node%d: get %s: %d %.40q (%d bytes) %v; want %.40q", p.i+1, k, code, body, len(body), err, value(k))
				}
			}
		}
	}
}

// TestClusterKVSurvivesKill9E2E writes KV through two nodes while a third is killed with
// SIGKILL: no acknowledged write is lost, writes go on, and the killed node, restarted,
// catches up. Each node is killed once in turn.
func TestClusterKVSurvivesKill9E2E(t *testing.T) {
	if testing.Short() {
		t.Skip("three verge processes")
	}
	cs := startClusterProcs(t, 3, testwasm.BuildFile(t, "examples/workers/counter"))
	cs.waitKV(t)
	var acked sync.Map // key -> value of acknowledged writes
	var nacked atomic.Int64
	for round, victim := range []int{0, 1, 2} {
		others := []*clusterProc{}
		for _, p := range cs.procs {
			if p.i != victim {
				others = append(others, p)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var okAfterKill atomic.Int64
		var killed atomic.Bool
		var lastOK, killedAt atomic.Int64 // unix nanos
		var maxGap atomic.Int64
		for w, p := range others {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					code, _, _ := p.do("PUT", "/kv/"+key, key)
					if code != 204 {
						continue
					}
					now := time.Now().UnixNano()
					acked.Store(key, key)
					nacked.Add(1)
					if killed.Load() {
						okAfterKill.Add(1)
						// The pause before the first acknowledged write after the kill counts.
						prev := lastOK.Swap(now)
						if g := now - max(prev, killedAt.Load()); g > maxGap.Load() {
							maxGap.Store(g)
						}
					}
				}
			}()
		}
		waitFor(t, "writes before the kill", 60*time.Second, func() bool { return nacked.Load() > int64(50*(round+1)) })
		killedAt.Store(time.Now().UnixNano())
		cs.procs[victim].kill()
		killed.Store(true)
		waitFor(t, "writes after the kill", 60*time.Second, func() bool { return okAfterKill.Load() > 100 })
		close(stop)
		wg.Wait()
		t.Logf("round %d: node%d killed; longest pause in acknowledged writes after the kill %v; %d acknowledged so far",
			round, victim+1, time.Duration(maxGap.Load()).Round(time.Millisecond), nacked.Load())
		cs.procs[victim].start()
		waitFor(t, "the restarted node to serve", 90*time.Second, func() bool {
			code, _, _ := cs.procs[victim].do("GET", "/kv/ready-0", "")
			return code == 200
		})
	}
	// Every acknowledged write is readable through every node, the restarted ones included.
	for _, p := range cs.procs {
		missing := 0
		acked.Range(func(k, v any) bool {
			var code int
			var body string
			// A restarted node may still be catching up: wait for the key, bounded.
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, body, _ = p.do("GET", "/kv/"+k.(string), "")
				if code == 200 && body == v.(string) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if code != 200 || body != v.(string) {
				missing++
				if missing < 5 {
					t.Errorf("node%d: acknowledged key %s: %d %q", p.i+1, k, code, body)
				}
			}
			return true
		})
		if missing > 0 {
			t.Fatalf("node%d: %d of %d acknowledged writes missing", p.i+1, missing, nacked.Load())
		}
	}
	t.Logf("%d acknowledged writes, none lost", nacked.Load())
}

// TestClusterUnreachableAtStartE2E: a node whose cluster cannot be reached starts anyway,
// says so, and serves what does not need the cluster.
func TestClusterUnreachableAtStartE2E(t *testing.T) {
	closed := freePort(t) // nothing listens there
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners: [{name: main, address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
cluster:
  node: lonely
  nats: {urls: ["nats://%s"]}
routes: [{name: r, respond: {body: "still serving\n"}}]
`, p.addr, p.pidFile, closed)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	waitFor(t, "verge to serve", 30*time.Second, func() bool {
		body, err := p.get(clusterClient, "/")
		return err == nil && body == "still serving\n"
	})
	if log := p.stderr.String(); !strings.Contains(log, "cannot reach NATS yet") || !strings.Contains(log, closed) {
		t.Fatalf("the log does not say the cluster is unreachable:\n%s", log)
	}
}

// TestClusterNodeUpgradeE2E upgrades a cluster node's binary (SIGUSR2) while a client writes
// and reads KV through that very node: the old process hands the embedded server's ports to
// the new one, whose client keeps working through the other nodes' servers meanwhile. Every
// acknowledged write is readable afterwards, and the new process runs the embedded server
// (the meta group counts three current peers again).
func TestClusterNodeUpgradeE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("three verge processes")
	}
	cs := startClusterProcs(t, 3, testwasm.BuildFile(t, "examples/workers/counter"))
	cs.waitKV(t)
	p := cs.procs[0]
	stop := make(chan struct{})
	done := make(chan struct{})
	var acked []string
	var failures atomic.Int64
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("up-%d", i)
			if code, _, _ := p.do("PUT", "/kv/"+key, key); code == 204 {
				acked = append(acked, key)
			} else {
				failures.Add(1)
			}
		}
	}()
	// A Durable Object owned by the node being upgraded (its first request went through
	// it), incremented through it and through node 2 during the upgrade.
	if code, body, err := p.do("GET", "/counter/upgrade", ""); code != 200 || body != "1" {
		t.Fatalf("first increment: %d %q %v", code, body, err)
	}
	doResults := make([]counterResult, 2)
	var doWG sync.WaitGroup
	for j, q := range []*clusterProc{p, cs.procs[1]} {
		doWG.Add(1)
		go func() {
			defer doWG.Done()
			doResults[j] = hammerCounter(q, "upgrade", 100000, stop, nil)
		}()
	}
	waitFor(t, "writes before the upgrade", 60*time.Second, func() bool { return failures.Load() > 0 || len(cs.procs) > 0 && p.cmd.Process != nil })
	oldPID := p.cmd.Process.Pid
	if err := syscall.Kill(oldPID, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var newPID int
	waitFor(t, "the new process to write the pid file", 60*time.Second, func() bool {
		got, err := readPID(p.pid)
		newPID = got
		return err == nil && got != oldPID
	})
	waitFor(t, "the old process to exit", 60*time.Second, func() bool {
		select {
		case <-p.exited:
			return true
		default:
			return false
		}
	})
	// The new process's embedded server answers: its status shows the meta group whole.
	var lastStatus string
	defer func() {
		if t.Failed() {
			t.Logf("last GET /cluster: %s", lastStatus)
		}
	}()
	waitFor(t, "the new process's embedded server to rejoin", 60*time.Second, func() bool {
		resp, err := clusterClient.Get("http://" + p.admin + "/cluster")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Peers []struct {
				Name    string `json:"name"`
				Offline bool   `json:"offline"`
			} `json:"peers"`
			Streams []struct {
				Healthy   bool   `json:"healthy"`
				Leader    string `json:"leader"`
				Followers []struct {
					Name string `json:"name"`
				} `json:"followers"`
			} `json:"streams"`
		}
		b, _ := io.ReadAll(resp.Body)
		lastStatus = string(b)
		if json.Unmarshal(b, &st) != nil || len(st.Peers) != 3 || len(st.Streams) == 0 {
			return false
		}
		for _, peer := range st.Peers {
			if peer.Offline {
				return false
			}
		}
		// Every stream is healthy (a leader, every follower current: the stream leader's
		// view) with this node among its replicas.
		for _, s := range st.Streams {
			has := s.Leader == "node1"
			for _, f := range s.Followers {
				has = has || f.Name == "node1"
			}
			if !s.Healthy || !has {
				return false
			}
		}
		return true
	})
	close(stop)
	<-done
	doWG.Wait()
	t.Logf("upgrade %d -> %d: %d writes acknowledged through the upgraded node, %d failed", oldPID, newPID, len(acked), failures.Load())
	doAcked, doFailed, highest := checkCounter(t, "upgrade", doResults)
	code, body, _ := cs.procs[1].do("GET", "/counter/upgrade", "")
	final, _ := strconv.Atoi(body)
	t.Logf("durable object during the upgrade: %d increments acknowledged, %d failed, highest %d, stored %d", doAcked+1, doFailed, highest, final-1)
	for _, r := range doResults {
		for _, e := range r.errs {
			t.Logf("through node%d: %s", r.node+1, e)
		}
	}
	if code != 200 || final-1 < doAcked+1 || final-1 < highest || final-1 > doAcked+1+doFailed {
		t.Errorf("after the upgrade: %d %q; want between %d and %d increments stored", code, body, doAcked+1, doAcked+1+doFailed)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	// KV reads are eventually consistent (a node's cache follows a watch): a node whose
	// watch restarted with the connection may answer from its previous index for a moment.
	// Every acknowledged key must be readable through every node within a bounded wait.
	late := 0
	for _, key := range acked {
		for _, q := range cs.procs {
			code, body, err := q.do("GET", "/kv/"+key, "")
			if code == 200 && body == key {
				continue
			}
			late++
			deadline := time.Now().Add(30 * time.Second)
			for (code != 200 || body != key) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				code, body, err = q.do("GET", "/kv/"+key, "")
			}
			if code != 200 || body != key {
				t.Fatalf("node%d: acknowledged key %s: %d %q %v", q.i+1, key, code, body, err)
			}
		}
	}
	t.Logf("%d reads answered only after a wait", late)
}
