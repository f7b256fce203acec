package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/observe"
)

// countingOrigin counts requests per path and tags each response with a Surrogate-Key
// derived from its path ("/css/x" -> "k-css-x").
type countingOrigin struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countingOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.n[r.URL.Path]++
	o.mu.Unlock()
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("Surrogate-Key", "k"+strings.ReplaceAll(r.URL.Path, "/", "-"))
	io.WriteString(w, r.URL.Path)
}

func (o *countingOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[path]
}

// edgeNode is one serverProc of a test cluster: its cache behind a config-built runtime, its
// cluster node and purge bus, and its admin API with metrics.
type edgeNode struct {
	proc   *serverProc
	origin *countingOrigin
	base   string // the runtime's URL
	admin  string // the admin API's URL
	m      *observe.Metrics
}

// startEdgeNode builds node i of c (which must be running) around origin; diskDir, when not
// empty, gives the cache a disk tier there (and the purge position file with it).
func startEdgeNode(t *testing.T, c *clustertest.Cluster, i int, origin *countingOrigin, diskDir string) *edgeNode {
	t.Helper()
	extra := ""
	if diskDir != "" {
		extra = fmt.Sprintf("cache: {memory_size: 4MiB, disk: {path: %s, size: 64MiB}}\n", diskDir)
	}
	o := httptest.NewServer(origin)
	t.Cleanup(o.Close)
	ch, base := cachedRuntime(t, o.URL, extra)
	m := observe.NewMetrics()
	// The confirmations of three nodes up arrive in milliseconds; the long wait only guards a
	// busy machine (and is waited out once, while n3 is down).
	sp := &serverProc{cache: ch, cluster: c.Nodes[i], metrics: m, log: slog.New(slog.DiscardHandler), purgeAckWait: 15 * time.Second}
	if err := m.Register(sp.cluster.Collector()); err != nil {
		t.Fatal(err)
	}
	state := ""
	if diskDir != "" {
		state = filepath.Join(diskDir, purgeStateFileName)
	}
	b, err := sp.startPurges(state)
	if err != nil {
		t.Fatal(err)
	}
	sp.purges = b
	t.Cleanup(b.Close)
	adm := &admin.Server{Addr: "127.0.0.1:0", Controller: sp, Metrics: m.Handler(), Logger: slog.New(slog.DiscardHandler)}
	if err := adm.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Shutdown(context.Background()) })
	select {
	case <-b.Ready():
	case <-time.After(60 * time.Second):
		t.Fatalf("node %d: purge bus not ready", i+1)
	}
	return &edgeNode{proc: sp, origin: origin, base: base, admin: "http://" + adm.ListenAddr().String(), m: m}
}

// get fetches path from the node with the Host every node shares, so that the cache keys
// (and the purge URLs) are the same on all of them.
func (e *edgeNode) get(t *testing.T, path string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	req.Host = "edge.test"
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
}

func (e *edgeNode) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.admin+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *edgeNode) purge(t *testing.T, body string) (int, admin.PurgeResult) {
	t.Helper()
	code, b := e.call(t, "POST", "/cache/purge", body)
	var r admin.PurgeResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("purge %s: %d %s", body, code, b)
	}
	return code, r
}

// TestClusterPurgeThroughAdminAPI is issue 14's "a purge on B empties A's and C's caches",
// on three serverProcs sharing one embedded JetStream cluster, through the admin API: URL,
// prefix, tag and all purges issued on n2 empty n1's and n3's caches and are confirmed by 3
// nodes; GET /cluster, the metrics and `verge cluster status` / `verge cache purge` show the
// cluster; n3, down during a purge, applies it from its disk cache's recorded position when it
// is back (while what was not purged survived on its disk); a node cut off answers 503.
func TestClusterPurgeThroughAdminAPI(t *testing.T) {
	c := clustertest.Start(t, 3)
	disk3 := t.TempDir()
	origins := []*countingOrigin{{n: map[string]int{}}, {n: map[string]int{}}, {n: map[string]int{}}}
	nodes := []*edgeNode{
		startEdgeNode(t, c, 0, origins[0], ""),
		startEdgeNode(t, c, 1, origins[1], ""),
		startEdgeNode(t, c, 2, origins[2], disk3),
	}
	paths := []string{"/a", "/img/1", "/img/2", "/css/x", "/keep"}
	fill := func() {
		t.Helper()
		for _, n := range nodes {
			for _, p := range paths {
				n.get(t, p)
				n.get(t, p)
			}
		}
	}
	// fetched reports, per node, how often path reached the node's origin.
	fetched := func(path string) [3]int {
		return [3]int{origins[0].count(path), origins[1].count(path), origins[2].count(path)}
	}
	fill()
	for _, p := range paths {
		if got := fetched(p); got != [3]int{1, 1, 1} {
			t.Fatalf("%s reached the origins %v times, want once each (then cached)", p, got)
		}
	}

	for _, tc := range []struct {
		body    string
		purged  int
		gone    []string
		origins [3]int // fetches of gone[0] after refetching
	}{
		{`{"urls":["http://edge.test/a"]}`, 1, []string{"/a"}, [3]int{2, 2, 2}},
		{`{"prefixes":["http://edge.test/img/"]}`, 2, []string{"/img/1", "/img/2"}, [3]int{2, 2, 2}},
		{`{"tags":["k-css-x"]}`, 1, []string{"/css/x"}, [3]int{2, 2, 2}},
	} {
		code, r := nodes[1].purge(t, tc.body)
		if code != 200 || r.Node != "n2" || r.Nodes != 3 || r.Members != 3 || len(r.Missing) != 0 || r.Objects != tc.purged || len(r.PerNode) != 3 {
			t.Fatalf("purge %s on n2: %d %+v, want 3 of 3 nodes", tc.body, code, r)
		}
		for i, n := range r.PerNode {
			if n.Node != fmt.Sprintf("n%d", i+1) || n.Objects != tc.purged {
				t.Fatalf("purge %s: per node %+v", tc.body, r.PerNode)
			}
		}
		for _, n := range nodes {
			for _, p := range tc.gone {
				n.get(t, p)
			}
		}
		if got := fetched(tc.gone[0]); got != tc.origins {
			t.Fatalf("after purge %s, %s reached the origins %v times, want %v (gone on every node)", tc.body, tc.gone[0], got, tc.origins)
		}
		if got := fetched("/keep"); got != [3]int{1, 1, 1} {
			t.Fatalf("after purge %s, /keep reached the origins %v times: purged too much", tc.body, got)
		}
	}

	// GET /cluster: the members, the purge stream and this node's purge position.
	code, body := nodes[0].call(t, "GET", "/cluster", "")
	var st clusterStatus
	if err := json.Unmarshal(body, &st); code != 200 || err != nil {
		t.Fatalf("GET /cluster: %d %s", code, body)
	}
	if st.Node != "n1" || len(st.Members) != 3 || st.MetaLeader == "" || st.Purges == nil || st.Purges.Received != 3 || st.Purges.Applied != 3 {
		t.Fatalf("GET /cluster: %s", body)
	}
	found := false
	for _, s := range st.Streams {
		found = found || s.Name == "verge_purges" && s.Replicas == 3 && s.Messages == 3
	}
	if !found {
		t.Fatalf("GET /cluster lists no verge_purges stream with 3 replicas and 3 messages: %s", body)
	}

	// The metrics: the cluster's and the purges'.
	_, metrics := nodes[0].call(t, "GET", "/metrics", "")
	for _, want := range []string{"verge_cluster_connected 1", "verge_cluster_members 3", `verge_cluster_stream_healthy{stream="verge_purges"}`,
		"verge_cluster_purges_received_total 3", "verge_cluster_purges_applied_total 3", `verge_cluster_purge_failures_total{kind="publish"} 0`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	_, metrics = nodes[1].call(t, "GET", "/metrics", "")
	if !bytes.Contains(metrics, []byte("verge_cluster_purges_sent_total 3")) {
		t.Errorf("n2 /metrics lacks verge_cluster_purges_sent_total 3")
	}

	// The CLI.
	var out, errOut bytes.Buffer
	if rc := run([]string{"cluster", "status", "--admin", nodes[0].admin}, &out, &errOut); rc != 0 {
		t.Fatalf("verge cluster status: exit %d: %s", rc, errOut.String())
	}
	t.Logf("verge cluster status:\n%s", out.String())
	for _, want := range []string{"node:", "n1", "meta leader:", "members (3 answered)", "n1 (this node)", "n2", "n3", "verge_purges", "STREAM", "LAG", "last applied sequence 3"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("verge cluster status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if rc := run([]string{"cluster", "status", "--json", "--admin", nodes[2].admin}, &out, &errOut); rc != 0 || json.Unmarshal(out.Bytes(), &st) != nil || st.Node != "n3" {
		t.Fatalf("verge cluster status --json: exit %d: %s %s", rc, out.String(), errOut.String())
	}
	out.Reset()
	if rc := run([]string{"cache", "purge", "--admin", nodes[1].admin, "--url", "http://edge.test/a"}, &out, &errOut); rc != 0 ||
		!strings.Contains(out.String(), "cluster: applied on 3 of 3 nodes") || !strings.Contains(out.String(), "purged 1 objects on n2") {
		t.Fatalf("verge cache purge: exit %d:\n%s%s", rc, out.String(), errOut.String())
	}

	// n3 goes down; a purge on n2 is confirmed by 2 of the 3 members and names n3 missing.
	nodes[2].get(t, "/a") // cached again on n3's disk
	before := fetched("/a")[2]
	nodes[2].proc.purges.Close()
	c.Kill(2)
	code, r := nodes[1].purge(t, `{"urls":["http://edge.test/a"]}`)
	// (n1 may confirm late: its consumer may have lived on n3's server and starts again on
	// another after missed heartbeats, while the stream elects a new leader.)
	if code != 200 || r.Members != 3 || !slices.Contains(r.Missing, "n3") || r.Nodes != 3-len(r.Missing) {
		t.Fatalf("purge with n3 down: %d %+v", code, r)
	}
	t.Logf("purge with n3 down: %+v", r)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := nodes[0].proc.purges.WaitApplied(ctx, r.Sequence); err != nil {
		t.Fatalf("n1 did not apply the purge: %v", err)
	}
	// n3 comes back with its disk cache: what was not purged is still there, the purge it
	// missed is applied.
	c.Restart(t, 2)
	n3 := startEdgeNode(t, c, 2, origins[2], disk3)
	// serve waits for this before it opens the listeners.
	select {
	case <-n3.proc.purges.CaughtUp():
	case <-ctx.Done():
		t.Fatal("n3 did not catch up with the purges it missed")
	}
	n3.get(t, "/keep")
	if got := fetched("/keep")[2]; got != 1 {
		t.Fatalf("/keep reached n3's origin %d times after the restart: the disk cache did not survive, the test proves nothing", got)
	}
	n3.get(t, "/a")
	if got := fetched("/a")[2]; got != before+1 {
		t.Fatalf("/a reached n3's origin %d times after the restart, want %d: n3 served what was purged while it was down", got, before+1)
	}

	// n1 is cut off from the cluster: its purge applies locally and answers 503.
	c.Nodes[0].Close()
	code, r = nodes[0].purge(t, `{"urls":["http://edge.test/keep"]}`)
	if code != 503 || r.Objects != 1 || r.Nodes != 1 || !strings.Contains(r.Error, "purged on this node only") || !strings.Contains(r.Error, "did not reach the cluster") {
		t.Fatalf("purge on a node cut off: %d %+v", code, r)
	}
	out.Reset()
	errOut.Reset()
	if rc := run([]string{"cache", "purge", "--admin", nodes[0].admin, "--tag", "k-keep"}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "did not reach the cluster") {
		t.Fatalf("verge cache purge on a node cut off: exit %d:\n%s%s", rc, out.String(), errOut.String())
	}
}

// TestClusterPurgeThroughBinary runs `verge run` as a cluster of one (an embedded JetStream
// server on loopback) with a disk cache: `verge cache purge` answers for 1 of 1 nodes and
// the object is gone, `verge cluster status` lists the purge stream, and the purge position
// is kept beside the disk cache.
func TestClusterPurgeThroughBinary(t *testing.T) {
	origin := &countingOrigin{n: map[string]int{}}
	o := httptest.NewServer(origin)
	t.Cleanup(o.Close)
	adminAddr, natsAddr := freePort(t), freePort(t)
	var cacheDir string
	p := launchVerge(t, func(p *proc) {
		cacheDir = filepath.Join(p.dir, "cache")
		y := fmt.Sprintf(`listeners: [{name: main, address: %s}]
routes: [{upstream: app, cache: {}}]
upstreams: [{name: app, servers: [{address: %q}]}]
admin: {address: %s}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
cache: {disk: {path: %q, size: 16MiB}}
cluster:
  node: solo
  embedded: {listen: %s}
`, p.addr, strings.TrimPrefix(o.URL, "http://"), adminAddr, p.pidFile, filepath.Join(p.dir, "data"), cacheDir, natsAddr)
		if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	adminURL := "http://" + adminAddr
	// The purge stream exists once the node has read it; `verge cluster status` shows it.
	var out, errOut bytes.Buffer
	waitFor(t, "the purge stream", 60*time.Second, func() bool {
		out.Reset()
		errOut.Reset()
		// -c reads the admin address from the running server's config file.
		return run([]string{"cluster", "status", "-c", p.cfgFile}, &out, &errOut) == 0 && strings.Contains(out.String(), "verge_purges")
	})
	if !strings.Contains(out.String(), "solo (this node)") || !strings.Contains(out.String(), "role:         standalone") {
		t.Fatalf("verge cluster status:\n%s", out.String())
	}
	for range 2 {
		if _, err := p.get(http.DefaultClient, "/x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := origin.count("/x"); n != 1 {
		t.Fatalf("origin saw /x %d times, want 1 (cached)", n)
	}
	out.Reset()
	if rc := run([]string{"cache", "purge", "--admin", adminURL, "--url", "http://" + p.addr + "/x"}, &out, &errOut); rc != 0 ||
		!strings.Contains(out.String(), "purged 1 objects on solo") || !strings.Contains(out.String(), "cluster: applied on 1 of 1 nodes") {
		t.Fatalf("verge cache purge: exit %d\n%s%s", rc, out.String(), errOut.String())
	}
	if _, err := p.get(http.DefaultClient, "/x"); err != nil {
		t.Fatal(err)
	}
	if n := origin.count("/x"); n != 2 {
		t.Fatalf("origin saw /x %d times after the purge, want 2", n)
	}
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"verge_cluster_connected 1", "verge_cluster_members 1", "verge_cluster_purges_sent_total 1", `verge_cluster_stream_healthy{stream="verge_purges"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("the binary's /metrics lacks %q", want)
		}
	}
	seq, err := os.ReadFile(filepath.Join(cacheDir, purgeStateFileName))
	if err != nil || strings.TrimSpace(string(seq)) == "" {
		t.Fatalf("purge position file: %q %v", seq, err)
	}
}

// TestClusterTokenFileTooShort: a short embedded token read from token_file is refused by
// validation with the field's position, as an inline one is, and at start when the file
// changed since the config was loaded.
func TestClusterTokenFileTooShort(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "nats.token")
	yaml := []byte(fmt.Sprintf(`listeners: [{address: "127.0.0.1:0"}]
routes: [{respond: {body: x}}]
worker_data: %q
cluster: {node: a, embedded: {listen: "0.0.0.0:4222", token_file: %q}}
`, dir, tok))
	os.WriteFile(tok, []byte("short\n"), 0o600)
	if _, err := config.Parse(filepath.Join(dir, "v.yaml"), yaml); err == nil || !strings.Contains(err.Error(), "v.yaml:4:") ||
		!strings.Contains(err.Error(), "cluster.embedded.token_file") || !strings.Contains(err.Error(), "at least 16 are required") {
		t.Fatalf("parse with a 5-byte token file: %v", err)
	}
	os.WriteFile(tok, []byte("s3cret-token-0123456789\n"), 0o600)
	cfg, err := config.Parse(filepath.Join(dir, "v.yaml"), yaml)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := clusterOptions(cfg, false); err != nil || o.Embedded.Token != "s3cret-token-0123456789" {
		t.Fatalf("clusterOptions with a long token file: %+v %v", o.Embedded, err)
	}
	os.WriteFile(tok, []byte("short\n"), 0o600)
	if _, err := clusterOptions(cfg, false); err == nil || !strings.Contains(err.Error(), "at least 16 are required") {
		t.Fatalf("clusterOptions with a 5-byte token file: %v", err)
	}
}

// TestCacheAndClusterCommandsWithoutCluster: on a server without a cluster section, `verge
// cache purge` purges and prints this node's counts (the admin answer unchanged), and `verge
// cluster status` says there is no cluster and exits 1; usage mistakes exit 2.
func TestCacheAndClusterCommandsWithoutCluster(t *testing.T) {
	origin := &countingOrigin{n: map[string]int{}}
	o := httptest.NewServer(origin)
	t.Cleanup(o.Close)
	c, base := cachedRuntime(t, o.URL, "")
	adm := &admin.Server{Addr: "127.0.0.1:0", Controller: &serverProc{cache: c}, Logger: slog.New(slog.DiscardHandler)}
	if err := adm.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Shutdown(context.Background()) })
	admURL := "http://" + adm.ListenAddr().String()
	for range 2 {
		resp, err := http.Get(base + "/p")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var out, errOut bytes.Buffer
	if rc := run([]string{"cache", "purge", "--admin", admURL, "--url", base + "/p"}, &out, &errOut); rc != 0 ||
		strings.TrimSpace(out.String()) != "purged 1 objects on this node (memory 1, disk 0)" {
		t.Fatalf("verge cache purge: exit %d: %q %s", rc, out.String(), errOut.String())
	}
	out.Reset()
	if rc := run([]string{"cache", "purge", "--admin", admURL, "--all", "--json"}, &out, &errOut); rc != 0 || strings.TrimSpace(out.String()) != `{"purged":0,"memory":0,"disk":0}` {
		t.Fatalf("verge cache purge --json: exit %d: %q", rc, out.String())
	}
	errOut.Reset()
	if rc := run([]string{"cache", "purge", "--admin", admURL, "--url", "/relative"}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "400") || !strings.Contains(errOut.String(), "not absolute") {
		t.Fatalf("relative URL: exit %d: %s", rc, errOut.String())
	}
	errOut.Reset()
	if rc := run([]string{"cluster", "status", "--admin", admURL}, &out, &errOut); rc != 1 || !strings.Contains(errOut.String(), "not part of a cluster") {
		t.Fatalf("verge cluster status without a cluster: exit %d: %s", rc, errOut.String())
	}
	for _, args := range [][]string{{"cache"}, {"cache", "purge"}, {"cluster"}, {"cluster", "bogus"}} {
		if rc := run(append(args, "--admin", admURL), &out, &errOut); rc != 2 {
			t.Errorf("verge %v: exit %d, want 2", args, rc)
		}
	}
}
