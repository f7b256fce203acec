package worker

import (
	"context"
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
	b := newMemoryBudget(10*mib, time.Millisecond, nil)
	r1 := b.reserve(ctx, 6*mib)
	if r1 == nil {
		t.Fatal("the first reservation was refused")
	}
	if r2 := b.reserve(ctx, 6*mib); r2 != nil {
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
	if r := b.reserve(ctx, 4*mib); r != nil {
		t.Fatal("a 4 MiB reservation fit beside 7 MiB in 10 MiB")
	}
	r3 := b.reserve(ctx, 3*mib)
	if r3 == nil {
		t.Fatal("a 3 MiB reservation was refused with 3 MiB free")
	}
	r3.done() // instantiation failed: nothing charged
	r1.Release(7 * mib)
	if got := b.inUse(); got != 0 {
		t.Fatalf("in use at the end: %d bytes, want 0", got)
	}
}
