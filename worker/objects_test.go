package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// objectsConfig deploys worker/testdata/objects (class Mem bound as MEM) with per objects
// per instance; v1 hides the module's verge_abi_version export, as a guest built with an
// SDK older than ABI version 2 reports no version.
func objectsConfig(t testing.TB, per int, v1 bool) worker.Config {
	mod := testwasm.Build(t, "worker/testdata/objects")
	if v1 {
		if !bytes.Contains(mod, []byte("verge_abi_version")) {
			t.Fatal("test module exports no verge_abi_version")
		}
		mod = bytes.ReplaceAll(mod, []byte("verge_abi_version"), []byte("verge_abi_versioN"))
	}
	return worker.Config{
		Name:    "objects",
		Module:  mod,
		Durable: map[string]worker.DurableBinding{"MEM": {Class: "Mem"}},
		Limits:  worker.Limits{ObjectsPerInstance: per},
	}
}

// memAnswer is an object's answer: its in-memory count, its stored count and its instance.
type memAnswer struct {
	mem, stored int
	instance    string
}

func hitObject(t *testing.T, w *worker.Worker, name, action string) memAnswer {
	t.Helper()
	rec, err := serve(t, w, "GET", "/o/"+name+"/"+action, "")
	if err != nil || rec.status != 200 {
		t.Fatalf("%s/%s: %v %v", name, action, rec, err)
	}
	var a memAnswer
	if _, err := fmt.Sscanf(rec.body.String(), "mem=%d stored=%d instance=%s", &a.mem, &a.stored, &a.instance); err != nil {
		t.Fatalf("%s/%s: answer %q: %v", name, action, rec.body.String(), err)
	}
	return a
}

// TestObjectsShareInstances: ten objects with four per instance live in three instances,
// each object keeping its own in-memory value across requests.
func TestObjectsShareInstances(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, objectsConfig(t, 4, false))
	instances := map[string]int{}
	for round := 1; round <= 3; round++ {
		for i := range 10 {
			a := hitObject(t, w, fmt.Sprint("o", i), "hit")
			if a.mem != round || a.stored != round {
				t.Fatalf("object o%d round %d: mem=%d stored=%d, want %d and %d", i, round, a.mem, a.stored, round, round)
			}
			if round == 1 {
				instances[a.instance]++
			}
		}
	}
	if len(instances) != 3 {
		t.Errorf("objects spread over %d instances (%v), want 3 (4+4+2)", len(instances), instances)
	}
	st := w.Stats()
	if st.LiveObjects != 10 || st.ObjectInstances != 3 {
		t.Errorf("stats: %d live objects in %d instances, want 10 in 3", st.LiveObjects, st.ObjectInstances)
	}
}

// TestEvictedObjectIsDroppedAndEmptyInstanceClosed: an object evicted from an instance that
// still hosts others is dropped by the guest (re-activated there it starts from storage, its
// in-memory count at 1), and an instance whose objects are all evicted is closed, its memory
// given back.
func TestEvictedObjectIsDroppedAndEmptyInstanceClosed(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{MaxLiveObjects: 2})
	w := e.deploy(t, objectsConfig(t, 4, false))
	a1 := hitObject(t, w, "a", "hit")
	a2 := hitObject(t, w, "a", "hit")
	b := hitObject(t, w, "b", "hit")
	if a2.mem != 2 || b.instance != a1.instance {
		t.Fatalf("a then b: %+v %+v %+v, want a at mem=2 and both in one instance", a1, a2, b)
	}
	// A third object evicts the least recently used one, a; the instance keeps b and c.
	c := hitObject(t, w, "c", "hit")
	if c.instance != a1.instance {
		t.Fatalf("c went to instance %s, want %s (room left)", c.instance, a1.instance)
	}
	if st := w.Stats(); st.Evictions != 1 || st.ObjectInstances != 1 {
		t.Fatalf("after c: %d evictions, %d instances; want 1 and 1", st.Evictions, st.ObjectInstances)
	}
	a3 := hitObject(t, w, "a", "hit")
	if a3.instance != a1.instance || a3.mem != 1 || a3.stored != 3 {
		t.Fatalf("a after its eviction: %+v, want mem=1 stored=3 in instance %s (a fresh value from storage)", a3, a1.instance)
	}
	if got := w.Stats().Invocations["evict"]; got != 2 {
		// a dropped before c ran, b (evicted when a came back) before a ran again.
		t.Errorf("%d evict invocations, want 2 (a, then b, dropped from the instance)", got)
	}
	memBefore := e.reg.MemoryInUse()
	// Removing the worker evicts every object: the instance closes with its last one.
	if err := e.reg.Remove(context.Background(), "objects"); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.LiveObjects != 0 || st.ObjectInstances != 0 {
		t.Errorf("after removal: %d live objects in %d instances, want none", st.LiveObjects, st.ObjectInstances)
	}
	if after := e.reg.MemoryInUse(); after >= memBefore {
		t.Errorf("memory in use %d after removal, was %d: the instances' memory was not given back", after, memBefore)
	}
}

// TestIdleObjectsEvictedCloseTheirInstances: objects evicted for being idle close the
// instances they emptied.
func TestIdleObjectsEvictedCloseTheirInstances(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{ObjectIdleTimeout: 50 * time.Millisecond})
	w := e.deploy(t, objectsConfig(t, 2, false))
	for i := range 5 {
		hitObject(t, w, fmt.Sprint("i", i), "hit")
	}
	if st := w.Stats(); st.ObjectInstances == 0 {
		t.Fatal("no object instances after five objects")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := w.Stats()
		if st.LiveObjects == 0 && st.ObjectInstances == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the last request: %d live objects in %d instances, want none", st.LiveObjects, st.ObjectInstances)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := w.Stats(); st.Evictions != 5 {
		t.Errorf("evictions = %d, want 5", st.Evictions)
	}
	// They come back from storage.
	if a := hitObject(t, w, "i3", "hit"); a.mem != 1 || a.stored != 2 {
		t.Errorf("i3 after eviction: %+v, want mem=1 stored=2", a)
	}
}

// TestVersion1GuestGetsAnInstancePerObject: a guest that reports no ABI version (an SDK
// before version 2) still runs, one object per instance, never sent an eviction it does not
// know.
func TestVersion1GuestGetsAnInstancePerObject(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{MaxLiveObjects: 2})
	w := e.deploy(t, objectsConfig(t, 16, true))
	seen := map[string]bool{}
	for _, name := range []string{"x", "y", "x"} {
		a := hitObject(t, w, name, "hit")
		seen[a.instance] = true
	}
	if len(seen) != 2 {
		t.Fatalf("two objects of a version-1 guest in %d instances, want 2", len(seen))
	}
	if st := w.Stats(); st.ObjectInstances != 2 || st.LiveObjects != 2 {
		t.Fatalf("stats: %d live in %d instances, want 2 in 2", st.LiveObjects, st.ObjectInstances)
	}
	// A third object evicts y: its instance closes (no eviction invocation is sent).
	hitObject(t, w, "z", "hit")
	if a := hitObject(t, w, "x", "hit"); a.mem != 3 {
		t.Fatalf("x: %+v, want mem=3 (its instance kept)", a)
	}
	if a := hitObject(t, w, "y", "hit"); a.mem != 1 || a.stored != 2 {
		t.Fatalf("y after eviction: %+v, want mem=1 stored=2", a)
	}
	if st := w.Stats(); st.Errors["crashed"] != 0 {
		t.Fatalf("crashed invocations: %d", st.Errors["crashed"])
	}
}

// TestCrashLosesInstanceForAllItsObjects: an object that crashes loses its instance; the
// other objects that lived there restart from storage on their next request, their stored
// data intact.
func TestCrashLosesInstanceForAllItsObjects(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, objectsConfig(t, 8, false))
	var first string
	for i := range 4 {
		for range 2 {
			a := hitObject(t, w, fmt.Sprint("c", i), "hit")
			if first == "" {
				first = a.instance
			} else if a.instance != first {
				t.Fatalf("c%d in instance %s, want %s", i, a.instance, first)
			}
		}
	}
	rec, err := serve(t, w, "GET", "/o/c0/crash", "")
	if err != nil || rec.status != 502 {
		t.Fatalf("crash: %v %v, want the worker's 502", rec, err)
	}
	for i := range 4 {
		a := hitObject(t, w, fmt.Sprint("c", i), "hit")
		if a.instance == first || a.mem != 1 || a.stored != 3 {
			t.Fatalf("c%d after the crash: %+v, want mem=1 stored=3 in a new instance", i, a)
		}
	}
	if st := w.Stats(); st.ObjectInstances != 1 {
		t.Errorf("%d object instances after the crash, want 1 (the lost one closed)", st.ObjectInstances)
	}
}

// TestObjectCallsObjectOnItsOwnInstance: an object calling another object that lives in the
// same instance does not wait for itself for ever. When the call may interleave (the SDK's
// default), the callee runs nested in the waiting caller, on the same instance, with its
// in-memory state; when it may not (a goroutine of the caller is alive across the call),
// the callee moves to another instance after moveAfter, restarting from storage.
func TestObjectCallsObjectOnItsOwnInstance(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, objectsConfig(t, 8, false))
	p := hitObject(t, w, "p", "hit")
	q := hitObject(t, w, "q", "hit")
	if p.instance != q.instance {
		t.Fatalf("p and q in instances %s and %s, want one", p.instance, q.instance)
	}
	rec := serveWithin(t, w, "/o/p/call?to=q")
	want := "mem=2 stored=2 instance=" + p.instance + " | mem=2 stored=2 instance=" + p.instance
	if got := rec.body.String(); rec.status != 200 || got != want {
		t.Fatalf("p calling q, nested: %d %q, want %q", rec.status, got, want)
	}
	rec = serveWithin(t, w, "/o/p/call?to=q&fan=1")
	got := rec.body.String()
	if rec.status != 200 || !strings.HasPrefix(got, "mem=3 stored=3 instance="+p.instance+" | mem=1 stored=3 instance=") {
		t.Fatalf("p calling q, not nestable: %d %q", rec.status, got)
	}
	if strings.HasSuffix(got, p.instance) {
		t.Fatalf("q answered from p's instance while p waited for it without nesting: %q", got)
	}
	// Both keep working: p where it was, q where it moved.
	if a := hitObject(t, w, "q", "hit"); a.mem != 2 || a.stored != 4 {
		t.Errorf("q after moving: %+v, want mem=2 stored=4", a)
	}
	if a := hitObject(t, w, "p", "hit"); a.mem != 4 || a.instance != p.instance {
		t.Errorf("p: %+v, want mem=4 in %s", a, p.instance)
	}
}

// TestObjectsNeverShareAcrossWorkersOrVersions: objects of two workers deployed from the
// same module never share an instance, nor do objects of two versions of one worker.
func TestObjectsNeverShareAcrossWorkersOrVersions(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	cfg := objectsConfig(t, 16, false)
	w1 := e.deploy(t, cfg)
	cfg.Name = "objects2"
	w2 := e.deploy(t, cfg)
	a := hitObject(t, w1, "same", "hit")
	b := hitObject(t, w2, "same", "hit")
	if a.instance == b.instance {
		t.Fatalf("objects of two workers in one instance %s", a.instance)
	}
	if b.mem != 1 || b.stored != 1 {
		t.Fatalf("the second worker's object saw the first's state: %+v", b)
	}
	// A new version of w1 (other limits): the object moves to an instance of it at its next
	// request, restarting from storage, and shares nothing with the old version's.
	old := hitObject(t, w1, "stay", "hit")
	cfg = objectsConfig(t, 8, false)
	e.deploy(t, cfg)
	moved := hitObject(t, w1, "stay", "hit")
	if moved.instance == old.instance || moved.mem != 1 || moved.stored != 2 {
		t.Fatalf("after a deploy: %+v (before: %+v), want a new instance, mem=1 stored=2", moved, old)
	}
	if c := hitObject(t, w1, "new", "hit"); c.instance != moved.instance {
		t.Fatalf("a new object went to %s, want the new version's %s", c.instance, moved.instance)
	}
}

// TestObjectsChurnConcurrently: many requests over more objects than may be live, so that
// objects are evicted, dropped and placed again while others run on the same instances;
// every request succeeds and every object's stored count ends at its number of requests.
func TestObjectsChurnConcurrently(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{MaxLiveObjects: 6})
	w := e.deploy(t, objectsConfig(t, 4, false))
	const workers, each, objects = 8, 30, 24
	errs := make(chan error, workers)
	hits := make([][objects]int, workers)
	for g := range workers {
		go func() {
			for i := range each {
				o := (g*7 + i*5) % objects
				rec, err := serve(t, w, "GET", fmt.Sprintf("/o/c%d/hit", o), "")
				if err != nil || rec.status != 200 {
					errs <- fmt.Errorf("c%d: %v %v", o, rec, err)
					return
				}
				hits[g][o]++
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for o := range objects {
		want := 0
		for g := range workers {
			want += hits[g][o]
		}
		if want == 0 {
			continue
		}
		// One more hit reads the stored count.
		if a := hitObject(t, w, fmt.Sprint("c", o), "hit"); a.stored != want+1 {
			t.Errorf("c%d: stored %d after %d requests, want %d", o, a.stored, want+1, want+1)
		}
	}
	if st := w.Stats(); st.Errors["crashed"] != 0 || st.LiveObjects > 6+workers {
		t.Errorf("stats: %d crashed, %d live", st.Errors["crashed"], st.LiveObjects)
	}
}

// serveWithin serves target on w and fails the test when it does not end within a generous
// guard (a deadlock).
func serveWithin(t *testing.T, w *worker.Worker, target string) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan *recorder, 1)
	go func() {
		rec := &recorder{}
		m := &message.Request{Method: "GET", Target: target, Authority: "example.com", Proto: message.HTTP11}
		w.Serve(ctx, rec, &worker.Request{Message: m, RemoteAddr: "127.0.0.1"})
		done <- rec
	}()
	select {
	case rec := <-done:
		return rec
	case <-ctx.Done():
		t.Fatalf("%s did not finish: deadlock", target)
		return nil
	}
}

// TestObjectStreamsLargeResponseToCallerOnItsInstance: an object whose caller waits on the
// same instance runs nested in that wait, so the caller reads nothing before the object's
// request returns: a response larger than the unread bytes a streamed caller may leave
// (backpressure) must not make the object wait for a read that cannot come.
func TestObjectStreamsLargeResponseToCallerOnItsInstance(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, objectsConfig(t, 8, false))
	p := hitObject(t, w, "p", "hit")
	q := hitObject(t, w, "q", "hit")
	if p.instance != q.instance {
		t.Fatalf("p and q in instances %s and %s, want one", p.instance, q.instance)
	}
	rec := serveWithin(t, w, "/o/p/bigcall?to=q")
	if got := rec.body.String(); rec.status != 200 || got != "got=524288 err=<nil>" {
		t.Fatalf("p reading q's 512 KiB: %d %q", rec.status, got)
	}
	if a := hitObject(t, w, "q", "hit"); a.instance != p.instance || a.mem != 2 {
		t.Errorf("q after streaming: %+v, want mem=2 in %s (not moved, not restarted)", a, p.instance)
	}
}

// TestObjectCalledBackWhileItWaitsIsNotMoved: p calls q (interleavable: p's gate opens and
// q runs nested on their shared instance), and q calls p back in a call that cannot
// interleave (q has a goroutine alive across it). p's new request may enter p's open gate
// but not the instance, which q holds; p must not be moved to another instance while its
// first request is still on the instance's stack (two live copies of p): the call back
// fails clearly instead.
func TestObjectCalledBackWhileItWaitsIsNotMoved(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	w := e.deploy(t, objectsConfig(t, 8, false))
	p := hitObject(t, w, "p", "hit")
	if q := hitObject(t, w, "q", "hit"); p.instance != q.instance {
		t.Fatalf("p and q in instances %s and %s, want one", p.instance, q.instance)
	}
	rec := serveWithin(t, w, "/o/p/call?to=q&act="+url.QueryEscape("call?to=p&fan=1"))
	got := rec.body.String()
	if rec.status != 200 || !strings.HasPrefix(got, "mem=2 stored=2 instance="+p.instance+" | ") || !strings.Contains(got, "was called back while one of its requests waits") {
		t.Fatalf("p calling q calling p back: %d %q", rec.status, got)
	}
	if a := hitObject(t, w, "p", "hit"); a.instance != p.instance || a.mem != 3 || a.stored != 3 {
		t.Errorf("p afterwards: %+v, want mem=3 stored=3 in %s", a, p.instance)
	}
}

// TestObjectCallsServiceThatCallsItBack: an object that calls a service binding (here its
// own worker) whose handler calls the object again does not wait for itself until its wall
// time: the service call is a wait the object's input gate opens across, as an object
// call is, so the call back runs nested in the waiting turn, with the object's memory.
func TestObjectCallsServiceThatCallsItBack(t *testing.T) {
	e := newEnv(t, t.TempDir(), worker.Services{})
	cfg := objectsConfig(t, 8, false)
	cfg.Services = map[string]string{"SELF": "objects"}
	// Short enough that a deadlock fails the call (at the wall time) well within
	// serveWithin's bound; long enough for a busy machine.
	cfg.Limits.WallTime = 10 * time.Second
	w := e.deploy(t, cfg)
	p := hitObject(t, w, "p", "hit")
	rec := serveWithin(t, w, "/o/p/svc?to=p")
	want := "mem=2 stored=2 instance=" + p.instance + " | mem=3 stored=3 instance=" + p.instance
	if got := rec.body.String(); rec.status != 200 || got != want {
		t.Fatalf("p calling itself through a service: %d %q, want %q", rec.status, got, want)
	}
	if a := hitObject(t, w, "p", "hit"); a.mem != 4 || a.stored != 4 {
		t.Errorf("p after: %+v, want mem=4 stored=4", a)
	}
}
