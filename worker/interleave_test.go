package worker_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// guardWait bounds waits for events; it is a failure guard, not a timing assertion.
const guardWait = 30 * time.Second

// heldOrigin is a loopback origin whose answers wait until the test releases them.
type heldOrigin struct {
	*httptest.Server
	arrived chan string
	release chan struct{}
	once    sync.Once
}

func newHeldOrigin(t *testing.T) *heldOrigin {
	h := &heldOrigin{arrived: make(chan string, 16), release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- r.URL.Path
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(func() { h.open(); h.Close() })
	return h
}

func (h *heldOrigin) open() { h.once.Do(func() { close(h.release) }) }

func (h *heldOrigin) awaitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-h.arrived:
	case <-time.After(guardWait):
		t.Fatal("the subrequest never reached the origin")
	}
}

func interleaveEnv(t *testing.T, dir string) (*env, *worker.Worker) {
	t.Helper()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	e := newEnv(t, dir, worker.Services{Transport: tr})
	cfg := worker.Config{
		Name:    "interleave",
		Module:  testwasm.Build(t, "examples/workers/waits"),
		Durable: map[string]worker.DurableBinding{"ROOM": {Class: "Room"}},
		// Enough stateless instances for TestInterleaveDepthCap's concurrent requests to
		// reach the object at once.
		Limits: worker.Limits{MaxInstances: 64},
	}
	cfg.Fetch.Allow = []string{"127.0.0.1"}
	return e, e.deploy(t, cfg)
}

type served struct {
	rec *recorder
	err error
}

func serveAsync(t *testing.T, w *worker.Worker, target string) chan served {
	ch := make(chan served, 1)
	go func() {
		rec, err := serve(t, w, "GET", target, "")
		ch <- served{rec, err}
	}()
	return ch
}

func await(t *testing.T, ch chan served, what string) served {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(guardWait):
		t.Fatalf("%s did not finish", what)
		return served{}
	}
}

// TestInterleaveSubrequest: request 1 to an object waits in a subrequest that the origin
// holds; request 2 to the same object runs and completes meanwhile (seeing request 1's
// write made before its wait); request 1 then completes with its own request and results
// (seeing request 2's write). Both writes are durable: a new registry over the same files
// finds them.
func TestInterleaveSubrequest(t *testing.T) {
	dir := t.TempDir()
	origin := newHeldOrigin(t)
	e, w := interleaveEnv(t, dir)
	r1 := serveAsync(t, w, "/obj/wait?name=r1&u="+url.QueryEscape(origin.URL+"/held"))
	origin.awaitArrival(t)

	rec, err := serve(t, w, "GET", "/obj/quick?name=r2&of=r1", "")
	if err != nil {
		t.Fatalf("request 2 while request 1 waits: %v", err)
	}
	rec.check(t, 200, "r2 before=1")
	select {
	case s := <-r1:
		t.Fatalf("request 1 finished before its subrequest was answered: %v %v", s.rec, s.err)
	default:
	}
	origin.open()
	s := await(t, r1, "request 1")
	if s.err != nil {
		t.Fatal(s.err)
	}
	s.rec.check(t, 200, "r1 origin=ok quick=r2 path=/wait")
	rec, _ = serve(t, w, "GET", "/obj/log", "")
	rec.check(t, 200, "begin r1,begin r2,end r2,end r1,begin ")

	// Durable: a new registry over the same storage finds both requests' writes.
	e.reg.Close(t.Context())
	_, w2 := interleaveEnv(t, dir)
	rec, _ = serve(t, w2, "GET", "/obj/quick?name=r3&of=r1", "")
	rec.check(t, 200, "r3 before=1")
}

// TestInterleaveSleep: sdk.Sleep opens the gate like a subrequest: a request sent while
// another sleeps completes before it.
func TestInterleaveSleep(t *testing.T) {
	_, w := interleaveEnv(t, t.TempDir())
	// Warm the object so that the sleeper's invocation starts at once.
	rec, _ := serve(t, w, "GET", "/obj/log", "")
	rec.check(t, 200, "begin ")
	r1 := serveAsync(t, w, "/obj/sleep?name=s1&ms=3000")
	// Wait until the sleeper has begun (its log entry), without relying on timing.
	deadline := time.Now().Add(guardWait)
	start := time.Now()
	polls := 0
	for {
		polls++
		rec, _ = serve(t, w, "GET", "/obj/log?name=p", "")
		if strings.Contains(rec.body.String(), "begin s1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sleeper never began")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	t.Logf("saw the sleeper after %d polls, %v: %s", polls, time.Since(start), rec.body.String())
	// That request already ran while s1 slept; one more proves it again.
	rec, _ = serve(t, w, "GET", "/obj/quick?name=q&of=x", "")
	rec.check(t, 200, "q before=")
	select {
	case s := <-r1:
		t.Fatalf("sleeper finished before the interleaved request: %v", s.rec)
	default:
	}
	s := await(t, r1, "sleeper")
	s.rec.check(t, 200, "s1 slept")
}

// TestInterleaveCallCycle: object a calls b, which calls a back. With the input gate held
// across the call this deadlocks until the wall time limit; with interleaving it completes.
func TestInterleaveCallCycle(t *testing.T) {
	_, w := interleaveEnv(t, t.TempDir())
	inner := url.QueryEscape("name=a2&of=a1")
	mid := url.QueryEscape("name=b1&to=a&next=quick&nq=" + inner)
	rec, err := serve(t, w, "GET", "/a/call?name=a1&to=b&next=call&nq="+mid, "")
	if err != nil {
		t.Fatal(err)
	}
	rec.check(t, 200, "a1<-[b1<-[a2 before=]]")
}

// TestInterleaveNestedCrash: a request that crashes while nested in a waiting one loses
// the instance: the waiting request fails cleanly once its wait ends (no hang, no crash of
// the host), the writes a completed request made survive, and the object serves the next
// request from a new instance.
func TestInterleaveNestedCrash(t *testing.T) {
	origin := newHeldOrigin(t)
	_, w := interleaveEnv(t, t.TempDir())
	r1 := serveAsync(t, w, "/obj/wait?name=r1&u="+url.QueryEscape(origin.URL+"/held"))
	origin.awaitArrival(t)
	rec, err := serve(t, w, "GET", "/obj/crash", "")
	if err == nil && rec.status == 200 {
		t.Fatalf("crashing request succeeded: %v", rec)
	}
	origin.open()
	s := await(t, r1, "waiting request")
	if s.err == nil && s.rec.status == 200 {
		t.Fatalf("waiting request succeeded on a lost instance: %v", s.rec)
	}
	rec, err = serve(t, w, "GET", "/obj/quick?name=after&of=r1", "")
	if err != nil {
		t.Fatal(err)
	}
	// r1's write before its wait was committed with the batch the crash's turn ended.
	rec.check(t, 200, "after before=1")
	rec, _ = serve(t, w, "GET", "/obj/log", "")
	rec.check(t, 200, "begin after,end after,begin ") // a new instance: the in-memory log started over
}

// TestInterleaveDepthCap: more concurrent waiting requests to one object than
// worker.MaxNesting all complete: beyond the cap the waits keep the gate closed and the
// remaining requests queue instead of nesting deeper (a cap that also let requests take
// the gate without a level to run them would deadlock here until the wall time limit).
func TestInterleaveDepthCap(t *testing.T) {
	_, w := interleaveEnv(t, t.TempDir())
	n := worker.MaxNesting + 8
	chans := make([]chan served, n)
	for i := range chans {
		chans[i] = serveAsync(t, w, "/obj/sleep?name=s&ms=200")
	}
	for i, ch := range chans {
		s := await(t, ch, "a sleeper")
		if s.err != nil {
			t.Fatalf("request %d: %v", i, s.err)
		}
		s.rec.check(t, 200, "s slept")
	}
}

// logUntil polls the object's in-memory log (each poll is itself a request to the object)
// until it contains want, and returns it.
func logUntil(t *testing.T, w *worker.Worker, obj, want string) string {
	t.Helper()
	deadline := time.Now().Add(guardWait)
	for {
		rec, err := serve(t, w, "GET", "/"+obj+"/log?name=p", "")
		if err != nil {
			t.Fatal(err)
		}
		if s := rec.body.String(); strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q", want)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
}

// TestNoInterleaveTimeSleepOrGoroutines: time.Sleep, and sdk.Sleep in a request with a
// goroutine of its own alive, keep the gate closed: no request sees the sleeper begun but
// not ended.
func TestNoInterleaveTimeSleepOrGoroutines(t *testing.T) {
	_, w := interleaveEnv(t, t.TempDir())
	for _, q := range []string{"go=1", "fan=1"} {
		obj := "o" + strings.ReplaceAll(q, "=", "")
		rec, _ := serve(t, w, "GET", "/"+obj+"/log", "") // the object is live
		rec.check(t, 200, "begin ")
		r1 := serveAsync(t, w, "/"+obj+"/sleep?name=s1&ms=500&"+q)
		got := logUntil(t, w, obj, "begin s1")
		if !strings.Contains(got, "end s1") {
			t.Fatalf("%s: a request ran while the sleeper waited: %s", q, got)
		}
		await(t, r1, "sleeper").rec.check(t, 200, "s1 slept")
	}
}

// TestInterleaveAlarm: an alarm whose handler waits in sdk.Sleep lets requests in, like a
// request does; the alarm then completes.
func TestInterleaveAlarm(t *testing.T) {
	_, w := interleaveEnv(t, t.TempDir())
	rec, _ := serve(t, w, "GET", "/al/alarm?ms=1", "")
	rec.check(t, 200, "set")
	got := logUntil(t, w, "al", "begin alarm")
	if strings.Contains(got, "end alarm") {
		// The poll that first saw the alarm begun must have run while it slept (1 s);
		// one that ran after it ended would have waited for it.
		t.Fatalf("no request ran while the alarm waited: %s", got)
	}
	logUntil(t, w, "al", "end alarm")
}
