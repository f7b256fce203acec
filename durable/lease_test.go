package durable

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLease is a lease the test ends by hand.
type fakeLease struct {
	valid    atomic.Bool
	lost     chan struct{}
	released atomic.Bool
}

func (l *fakeLease) Valid() bool           { return l.valid.Load() }
func (l *fakeLease) Lost() <-chan struct{} { return l.lost }
func (l *fakeLease) Release()              { l.released.Store(true) }

// fakeLeases hands out a new valid lease per claim and keeps them.
type fakeLeases struct {
	mu     sync.Mutex
	leases []*fakeLease
}

func (p *fakeLeases) Claim(ctx context.Context, ns string, id ID) (func(), error) {
	l, err := p.ClaimLease(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}

func (p *fakeLeases) ClaimLease(context.Context, string, ID) (Lease, error) {
	l := &fakeLease{lost: make(chan struct{})}
	l.valid.Store(true)
	p.mu.Lock()
	p.leases = append(p.leases, l)
	p.mu.Unlock()
	return l, nil
}

func (p *fakeLeases) last() (*fakeLease, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leases[len(p.leases)-1], len(p.leases)
}

// TestLeaseGatesTurnsAndCommits checks the namespace's side of a LeasePlacement: no turn
// runs and no batch commits while the lease is not valid, and a lost lease makes the
// object be claimed again.
func TestLeaseGatesTurnsAndCommits(t *testing.T) {
	p := &fakeLeases{}
	ns := newNS(t, t.TempDir(), Options{Placement: p})
	ctx := context.Background()
	id := ns.IDFromName("a")
	var got int
	inc := func(tr *Turn) (err error) { got, err = increment(tr); return err }

	if err := ns.Do(ctx, id, inc); err != nil || got != 1 {
		t.Fatalf("first increment: got %d, %v", got, err)
	}
	l1, claims := p.last()
	if claims != 1 {
		t.Fatalf("claims: got %d, want 1", claims)
	}

	// A lapsed lease: the turn does not run.
	l1.valid.Store(false)
	ran := false
	err := ns.Do(ctx, id, func(*Turn) error { ran = true; return nil })
	if !errors.Is(err, ErrLeaseLost) || ran {
		t.Fatalf("turn under a lapsed lease: ran %v, err %v; want ErrLeaseLost", ran, err)
	}

	// Valid again (a late renewal): served as before.
	l1.valid.Store(true)
	if err := ns.Do(ctx, id, inc); err != nil || got != 2 {
		t.Fatalf("increment after renewal: got %d, %v", got, err)
	}

	// The lease lapses during the turn: the batch is rolled back, not committed.
	err = ns.Do(ctx, id, func(tr *Turn) error {
		if _, err := increment(tr); err != nil {
			return err
		}
		l1.valid.Store(false)
		return nil
	})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("commit under a lapsed lease: got %v, want ErrLeaseLost", err)
	}

	// Lost: the next request drops the instance and claims again.
	close(l1.lost)
	if err := ns.Do(ctx, id, inc); err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Fatalf("value after the rolled-back batch: got %d, want 3 (the write under the lapsed lease landed)", got)
	}
	if _, claims := p.last(); claims != 2 || !l1.released.Load() {
		t.Fatalf("after the loss: claims %d (want 2), first lease released %v", claims, l1.released.Load())
	}
}

// slowPlacement blocks claims of one ID until release is closed, then fails them.
type slowPlacement struct {
	slow    ID
	entered chan struct{}
	release chan struct{}
}

var errSlowClaim = errors.New("claim refused")

func (p *slowPlacement) Claim(_ context.Context, _ string, id ID) (func(), error) {
	if id != p.slow {
		return func() {}, nil
	}
	select {
	case p.entered <- struct{}{}:
	default:
	}
	<-p.release
	return nil, errSlowClaim
}

// TestSlowClaimDelaysNoOtherObject checks that an object's activation runs outside the
// namespace's lock: while one object's claim hangs (a cluster round trip), other objects
// are served, and a failed activation leaves no object behind.
func TestSlowClaimDelaysNoOtherObject(t *testing.T) {
	ctx := context.Background()
	p := &slowPlacement{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ns := newNS(t, t.TempDir(), Options{Placement: p})
	p.slow = ns.IDFromName("slow")
	errs := make(chan error, 2)
	go func() { errs <- ns.Do(ctx, p.slow, func(*Turn) error { return nil }) }()
	<-p.entered
	go func() { errs <- ns.Do(ctx, p.slow, func(*Turn) error { return nil }) }()

	done := make(chan error, 1)
	go func() {
		done <- ns.Do(ctx, ns.IDFromName("other"), func(t *Turn) error { _, err := increment(t); return err })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-errs:
		t.Fatal("a request for the slow object ended before its claim did")
	case <-time.After(time.Minute):
		t.Fatal("another object's request waited for the slow claim")
	}
	close(p.release)
	for range 2 {
		if err := <-errs; !errors.Is(err, errSlowClaim) {
			t.Fatalf("request for the slow object: got %v, want the claim's error", err)
		}
	}
	if live := ns.Live(); live != 1 {
		t.Fatalf("live objects: got %d, want 1 (the failed one must not stay)", live)
	}
}
