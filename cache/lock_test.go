package cache

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

func TestThousandConcurrentMissesReachOriginOnce(t *testing.T) {
	body := strings.Repeat("z", 10000)
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: body, delay: 50 * time.Millisecond}))
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ex := e.do("GET", "/cold")
			if ex.status != 200 || ex.body.String() != body {
				errs <- ex.header.Get("Cache-Status")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for cs := range errs {
		t.Fatalf("a request got a wrong answer (Cache-Status %q)", cs)
	}
	if got := e.hits(); got != 1 {
		t.Fatalf("origin saw %d requests, want 1", got)
	}
}

func TestLockTimeoutGoesUpstream(t *testing.T) {
	e := newEnv(t, Options{Policy: &Policy{LockTimeout: 20 * time.Millisecond}},
		fixed(originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "slow", delay: 200 * time.Millisecond}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.do("GET", "/") }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	e.expect(e.do("GET", "/"), 200, "slow", 2)
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("waiter took %v", d)
	}
	wg.Wait()
}

func TestUncacheableReleasesWaiters(t *testing.T) {
	e := newEnv(t, Options{}, fixed(originResp{status: 200, header: []string{"Cache-Control", "no-store"}, body: "x", delay: 30 * time.Millisecond}))
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); e.do("GET", "/") }()
	}
	wg.Wait()
	if e.hits() != 5 {
		t.Fatalf("origin saw %d, want 5 (each request on its own)", e.hits())
	}
}

// gateBody releases its bytes chunk by chunk when told.
type gateBody struct {
	chunks chan string
}

func (g *gateBody) Read(p []byte) (int, error) {
	s, ok := <-g.chunks
	if !ok {
		return 0, io.EOF
	}
	return copy(p, s), nil
}
func (g *gateBody) Close() error { return nil }

func TestStreamingReadersOfObjectInProgress(t *testing.T) {
	gate := &gateBody{chunks: make(chan string)}
	e := newEnv(t, Options{}, nil)
	e.o.handler = func(*message.Request) originResp { return originResp{} }
	tr := &streamOrigin{body: gate}
	e.p.Transport = tr
	first := make(chan *recExchange)
	go func() { first <- e.do("GET", "/big") }()
	gate.chunks <- "part1-"
	// A second request arrives while the object is still streaming in.
	second := make(chan *recExchange)
	go func() { second <- e.do("GET", "/big") }()
	time.Sleep(20 * time.Millisecond)
	gate.chunks <- "part2"
	close(gate.chunks)
	a, b := <-first, <-second
	if a.body.String() != "part1-part2" || b.body.String() != "part1-part2" {
		t.Fatalf("bodies %q and %q", a.body.String(), b.body.String())
	}
	if tr.n.Load() != 1 {
		t.Fatalf("origin saw %d requests, want 1", tr.n.Load())
	}
	if cs := cacheStatus(b); !strings.Contains(cs, "collapsed") {
		t.Fatalf("second Cache-Status %q, want collapsed", cs)
	}
}
