package cache

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
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
	// The first request holds the origin (and so the cache lock) until the test lets it go;
	// the second must give up waiting after LockTimeout and fetch on its own while the first
	// is still held. Events only: no sleeps, no duration bounds.
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int64
	e := newEnv(t, Options{Policy: &Policy{LockTimeout: 20 * time.Millisecond}}, func(*message.Request) originResp {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
		return originResp{status: 200, header: []string{"Cache-Control", "max-age=100"}, body: "slow"}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.do("GET", "/") }()
	defer wg.Wait()
	defer close(release)
	guard := time.After(10 * time.Second) // a failure guard, not a wait
	select {
	case <-entered:
	case <-guard:
		t.Fatal("the first request never reached the origin")
	}
	second := make(chan *recExchange, 1)
	go func() { second <- e.do("GET", "/") }()
	select {
	case ex := <-second:
		e.expect(ex, 200, "slow", 2)
	case <-guard:
		t.Fatal("the waiter did not go upstream after the lock timeout while the first fetch hung")
	}
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
	// It joins the object in progress: the test waits for it to write the first part (an
	// event, not a span of time) before letting the rest in.
	second := make(chan *recExchange)
	ex2 := &recExchange{wrote: make(chan struct{}, 1)}
	go func() { second <- e.doEx(ex2, "GET", "/big") }()
	select {
	case <-ex2.wrote:
	case <-time.After(10 * time.Second): // a failure guard
		t.Fatal("the second request did not stream the part already fetched")
	}
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

// TestReaderOfGrowingBody starts range readers of a body while it is written, as requests
// that waited on the lock do. Under the race detector it fails if starting a read looks at
// the body's size without the lock.
func TestReaderOfGrowingBody(t *testing.T) {
	b := newBody(1<<20, 0)
	const n = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			b.write([]byte("x"))
		}
		b.finish()
	}()
	var r bodyReader
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		r.init(context.Background(), b, 0, 10)
		r.Close()
	}
	r.init(context.Background(), b, 0, -1)
	got, err := io.ReadAll(&r)
	r.Close()
	if err != nil || len(got) != n {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, n)
	}
}
