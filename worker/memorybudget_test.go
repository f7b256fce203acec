package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestReservationsKeepNewInstancesWithinTheLimit: new instances reserve their expected memory
// before they are created, so concurrent ones cannot all be admitted against the same free
// memory and overshoot the limit once they charge it; what an instance does not use of its
// reservation goes back.
func TestReservationsKeepNewInstancesWithinTheLimit(t *testing.T) {
	ctx := context.Background()
	const mib = 1 << 20
	b := newMemoryBudget(10*mib, time.Millisecond)
	s := b.share(nil)
	r1 := s.reserve(ctx, 6*mib)
	if r1 == nil {
		t.Fatal("the first reservation was refused")
	}
	if r2 := s.reserve(ctx, 6*mib); r2 != nil {
		t.Fatalf("a second 6 MiB reservation fit beside the first in 10 MiB (in use %d MiB)", b.inUse()/mib)
	}
	// The instance charges 4 MiB and grows by 1 MiB within its reservation, then by 2 MiB
	// beyond it, and is done: 7 MiB in use.
	r1.Charge(4 * mib)
	if !r1.Grow(1*mib) || !r1.Grow(2*mib) {
		t.Fatal("growth within the limit was refused")
	}
	r1.done()
	if got := b.inUse(); got != 7*mib {
		t.Fatalf("in use after the instance was created: %d MiB, want 7", got/mib)
	}
	if r := s.reserve(ctx, 4*mib); r != nil {
		t.Fatal("a 4 MiB reservation fit beside 7 MiB in 10 MiB")
	}
	r3 := s.reserve(ctx, 3*mib)
	if r3 == nil {
		t.Fatal("a 3 MiB reservation was refused with 3 MiB free")
	}
	r3.done() // instantiation failed: nothing charged
	r1.Release(7 * mib)
	if got := b.inUse(); got != 0 {
		t.Fatalf("in use at the end: %d bytes, want 0", got)
	}
}

// waitFor polls cond until it holds, failing the test after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMemoryFairShare is the noisy-neighbour report: under one memory limit, a worker that
// fills it must not take the memory of another. With two workers holding memory, each one's
// fair share is half the limit. The flooding worker, over its share, is refused at once and
// the quiet worker's idle instances are left alone; the quiet worker, within its share, has
// the flooder's idle instances closed and waits for its running ones to give memory back.
func TestMemoryFairShare(t *testing.T) {
	const mib = 1 << 20
	b := newMemoryBudget(100*mib, time.Hour) // a wait that would never end: refusals must be at once
	var floodTrims, quietTrims atomic.Int32
	var flood, quiet *memShare
	var floodIdle int64 // memory of the flooder's idle instances, given back by its trim
	flood = b.share(func() {
		floodTrims.Add(1)
		if floodIdle > 0 {
			flood.Release(floodIdle)
			floodIdle = 0
		}
	})
	quiet = b.share(func() { quietTrims.Add(1) })
	quiet.Charge(10 * mib) // a warm instance
	flood.Charge(90 * mib) // running instances

	try := func(s *memShare, n int64) chan bool {
		c := make(chan bool, 1)
		go func() { c <- s.Grow(n) }()
		return c
	}
	select {
	case ok := <-try(flood, 5*mib):
		if ok {
			t.Fatal("the flooder was given memory over the limit")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flooder, over its fair share, waits instead of being refused at once")
	}
	if n := quietTrims.Load(); n != 0 {
		t.Fatalf("the quiet worker's idle instances were closed %d times for the flooder", n)
	}

	// The quiet worker asks for 20 MiB: the flooder's idle instances are closed (none), and
	// the quiet one waits; while it waits, the flooder's finishing instances are shed.
	got := try(quiet, 20*mib)
	waitFor(t, "the quiet worker to wait", func() bool { return b.waiters.Load() == 1 })
	if floodTrims.Load() == 0 {
		t.Error("the flooder, over its share, kept its idle instances while memory was short")
	}
	if !flood.shed() {
		t.Error("the flooder's finishing instances are pooled while another worker waits for memory")
	}
	if quiet.shed() {
		t.Error("the quiet worker, within its share, would shed its instances")
	}
	flood.Release(30 * mib) // one of the flooder's instances closes
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the quiet worker was refused")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the quiet worker was not given the memory released")
	}
	if u := b.inUse(); u != 90*mib {
		t.Fatalf("in use %d MiB, want 90", u/mib)
	}

	// Idle memory of the flooder is closed for the quiet worker at once.
	flood.Release(60 * mib)
	flood.Charge(60 * mib)
	floodIdle = 40 * mib // 20 running, 40 idle
	select {
	case ok := <-try(quiet, 30*mib):
		if !ok {
			t.Fatal("the quiet worker was refused although the flooder had idle instances")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the quiet worker waited although the flooder had idle instances")
	}

	// A worker alone may wait for its own memory (no neighbour to protect).
	b2 := newMemoryBudget(10*mib, time.Hour)
	solo := b2.share(nil)
	solo.Charge(10 * mib)
	c := try(solo, 5*mib)
	waitFor(t, "the lone worker to wait", func() bool { return b2.waiters.Load() == 1 })
	solo.Release(5 * mib)
	if ok := <-c; !ok {
		t.Fatal("the lone worker was refused after memory was released")
	}
}
