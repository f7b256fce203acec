package durable

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// commitGate wraps a store so that a test can see and hold commits.
type commitGate struct {
	Store
	mu       sync.Mutex
	commits  int
	hold     chan struct{} // when non-nil, Commit waits on it
	inCommit chan struct{} // signaled when a Commit starts waiting
}

func (s *commitGate) Open(ctx context.Context, ns string, id ID) (ObjectStore, error) {
	o, err := s.Store.Open(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	return &gateObject{ObjectStore: o, s: s}, nil
}

type gateObject struct {
	ObjectStore
	s *commitGate
}

func (o *gateObject) Begin(ctx context.Context) (Txn, error) {
	txn, err := o.ObjectStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &gateTxn{Txn: txn, s: o.s}, nil
}

type gateTxn struct {
	Txn
	s *commitGate
}

func (t *gateTxn) Commit() error {
	t.s.mu.Lock()
	hold := t.s.hold
	t.s.mu.Unlock()
	if hold != nil {
		t.s.inCommit <- struct{}{}
		<-hold
	}
	err := t.Txn.Commit()
	t.s.mu.Lock()
	t.s.commits++
	t.s.mu.Unlock()
	return err
}

func newGateNS(t *testing.T) (*Namespace, *commitGate) {
	t.Helper()
	st := &commitGate{Store: OpenSQLite(t.TempDir()), inCommit: make(chan struct{})}
	ns, err := New(context.Background(), Options{Name: "gate", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close(context.Background())
		st.Close()
	})
	return ns, st
}

const guard = 20 * time.Second // failure guard only

// TestSuspendLetsNextRequestIn: a turn that suspends (a subrequest or timer) lets a second
// request to the same object run to completion; the first then resumes with its own
// state, and both see each other's writes in order. The writes of the first made before
// the wait are committed before the gate opens, so before either result is released (the
// output gate).
func TestSuspendLetsNextRequestIn(t *testing.T) {
	ns, st := newGateNS(t)
	id := ns.IDFromName("obj")
	ctx := context.Background()
	suspended := make(chan struct{})
	release := make(chan struct{})
	first := make(chan error, 1)
	var afterWait []byte
	go func() {
		first <- ns.Do(ctx, id, func(tr *Turn) error {
			if err := tr.Put([]Entry{{Key: "a", Value: []byte("1")}}); err != nil {
				return err
			}
			if !tr.Suspend() {
				return errors.New("Suspend refused")
			}
			if _, err := tr.Get([]string{"a"}); !errors.Is(err, errSuspended) {
				return errors.New("storage usable while suspended")
			}
			close(suspended)
			<-release // the subrequest
			if err := tr.Reenter(ctx, func(g chan<- struct{}) { g <- struct{}{} }); err != nil {
				return err
			}
			vs, err := tr.Get([]string{"b"})
			if err != nil {
				return err
			}
			afterWait = vs[0]
			return tr.Put([]Entry{{Key: "c", Value: []byte("3")}})
		})
	}()
	select {
	case <-suspended:
	case <-time.After(guard):
		t.Fatal("first request did not suspend")
	}
	// The batch holding the first request's write was committed before the gate opened:
	// a request let in sees only durable writes, and earlier requests are not held up.
	st.mu.Lock()
	atSuspend := st.commits
	st.mu.Unlock()
	if atSuspend == 0 {
		t.Fatal("the gate opened before the waiting request's writes were committed")
	}
	var seen []byte
	err := ns.Do(ctx, id, func(tr *Turn) error {
		vs, err := tr.Get([]string{"a"})
		if err != nil {
			return err
		}
		seen = vs[0]
		return tr.Put([]Entry{{Key: "b", Value: []byte("2")}})
	})
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if string(seen) != "1" {
		t.Fatalf("second request saw a=%q, want the first's write before its wait", seen)
	}
	// The second request's result was released: the first's earlier write must be
	// committed by now (it was in the batch the second committed).
	st.mu.Lock()
	commits := st.commits
	st.mu.Unlock()
	if commits == 0 {
		t.Fatal("second request's result released before any commit")
	}
	select {
	case err := <-first:
		t.Fatalf("first request ended while its wait was not over: %v", err)
	default:
	}
	close(release)
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("first request: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("first request did not resume")
	}
	if string(afterWait) != "2" {
		t.Fatalf("first request saw b=%q after its wait, want the second's write", afterWait)
	}
	// A fresh namespace over the same files sees all three writes: nothing was lost.
	err = ns.Do(ctx, id, func(tr *Turn) error {
		vs, err := tr.Get([]string{"a", "b", "c"})
		if err != nil {
			return err
		}
		if string(vs[0]) != "1" || string(vs[1]) != "2" || string(vs[2]) != "3" {
			t.Errorf("got a=%q b=%q c=%q, want 1 2 3", vs[0], vs[1], vs[2])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStorageWaitKeepsGateClosed: a turn blocked in storage (here its batch's commit,
// which the store holds) does not let the next request in; that request runs only after.
func TestStorageWaitKeepsGateClosed(t *testing.T) {
	ns, st := newGateNS(t)
	id := ns.IDFromName("obj")
	ctx := context.Background()
	st.mu.Lock()
	st.hold = make(chan struct{})
	st.mu.Unlock()
	first := make(chan error, 1)
	go func() {
		first <- ns.Do(ctx, id, func(tr *Turn) error { return tr.Put([]Entry{{Key: "a", Value: []byte("1")}}) })
	}()
	select {
	case <-st.inCommit: // the first request's storage wait (its commit) is in progress
	case <-time.After(guard):
		t.Fatal("no commit started")
	}
	ran := make(chan struct{})
	second := make(chan error, 1)
	go func() {
		second <- ns.Do(ctx, id, func(tr *Turn) error { close(ran); return nil })
	}()
	// The second request is queued at the gate (counted as waiting) but must not run.
	deadline := time.Now().Add(guard)
	for ns.waitingAt(id) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("second request never reached the gate")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-ran:
		t.Fatal("second request ran while the first waited for storage")
	default:
	}
	st.mu.Lock()
	hold := st.hold
	st.hold = nil
	st.mu.Unlock()
	close(hold)
	for _, ch := range []chan error{first, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(guard):
			t.Fatal("request did not finish")
		}
	}
}

// TestNoSuspendInsideTransaction: inside an explicit transaction a turn keeps the gate.
func TestNoSuspendInsideTransaction(t *testing.T) {
	ns, _ := newGateNS(t)
	err := ns.Do(context.Background(), ns.IDFromName("x"), func(tr *Turn) error {
		if err := tr.Begin(); err != nil {
			return err
		}
		if tr.Suspend() {
			return errors.New("suspended inside a transaction")
		}
		return tr.Commit()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitingAt reports how many requests wait at the gate of a live object (tests only).
func (ns *Namespace) waitingAt(id ID) int32 {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if o := ns.objects[id]; o != nil {
		return o.waiting.Load()
	}
	return 0
}
