package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// TestClusterCacheAPIE2E runs the cache example on a three-node cluster: each node keeps its
// own Cache API entries (as Cloudflare's cache is per data center), and a purge through one
// node's admin API reaches the entries of every node.
func TestClusterCacheAPIE2E(t *testing.T) {
	mod := testwasm.BuildFile(t, "examples/workers/cache")
	cs := startClusterProcsWith(t, 3, mod, "")
	xcache := func(p *clusterProc, path string) string {
		resp, err := clusterClient.Get("http://" + p.addr + path)
		if err != nil {
			t.Fatalf("node%d: %v", p.i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Cache")
	}
	for _, p := range cs.procs {
		waitFor(t, fmt.Sprintf("node%d to serve", p.i+1), 90*time.Second, func() bool {
			code, _, _ := p.do("GET", "/api/ready", "")
			return code == 200
		})
	}
	for _, p := range cs.procs {
		if a, b := xcache(p, "/api/x"), xcache(p, "/api/x"); a != "MISS" || b != "HIT" {
			t.Fatalf("node%d: %s then %s, want MISS then HIT", p.i+1, a, b)
		}
	}
	resp, err := http.Post("http://"+cs.procs[0].admin+"/cache/purge", "application/json", strings.NewReader(`{"all": true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("purge: %d %s", resp.StatusCode, body)
	}
	for _, p := range cs.procs {
		// The purge is applied on every node before the answer (or within its wait); poll
		// for the nodes that confirmed late.
		waitFor(t, fmt.Sprintf("node%d to drop its entry", p.i+1), 30*time.Second, func() bool {
			return xcache(p, "/api/x") == "MISS"
		})
	}
}
