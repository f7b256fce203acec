package router

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// TestCachedWorkerRoute: concurrent misses of a cached worker route share one invocation
// (the cache lock), later requests are hits, and html_rewrite applies to the worker's HTML.
func TestCachedWorkerRoute(t *testing.T) {
	mod := testwasm.BuildFile(t, "examples/workers/cache")
	rw := testwasm.BuildFile(t, "examples/workers/rewrite")
	dir := t.TempDir()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	hc, err := cache.New(cache.Options{MemorySize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	reg := worker.NewRegistry(worker.Services{CacheDir: filepath.Join(dir, "cache"), Transport: tr, Cache: hc})
	t.Cleanup(func() { reg.Close(context.Background()) })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore(), Workers: reg, Cache: hc}})
	y := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
access_log: {output: "off"}
admin: {disabled: true}
routes:
  - {name: c, match: {path_prefix: /origin/}, worker: c, cache: {}}
  - name: r
    match: {path_prefix: /page}
    worker: r
    cache: {ttl: {"200": 1m}}
    html_rewrite: [{selector: title, set_inner_content: "rewritten", text: true}]
workers:
  - {name: c, module: %q, limits: {max_instances: 1}}
  - {name: r, module: %q}
`, mod, rw)
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	base := "http://" + rt.Addr("main").String()

	var wg sync.WaitGroup
	bodies := make([]string, 8)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, bodies[i] = do(t, "GET", base+"/origin/x", "")
		}()
	}
	wg.Wait()
	for _, b := range bodies {
		if b != bodies[0] || !strings.HasPrefix(b, "origin /origin/x") {
			t.Fatalf("concurrent misses got different answers: %q", bodies)
		}
	}
	resp, err := http.Get(base + "/origin/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "hit") {
		t.Errorf("Cache-Status %q, want a hit", cs)
	}
	// HEAD is answered from the same entry.
	if code, _ := do(t, "HEAD", base+"/origin/x", ""); code != 200 {
		t.Errorf("HEAD: %d", code)
	}
	for i := 0; i < 2; i++ {
		code, body := do(t, "GET", base+"/page?items=50", "")
		if code != 200 || !strings.Contains(body, "<title>rewritten</title>") || !strings.Contains(body, `loading="lazy"`) {
			t.Fatalf("round %d: %d %.200q", i, code, body)
		}
	}
}
