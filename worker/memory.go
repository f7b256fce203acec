package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/verge-edge/verge/worker/internal/wasm"
)

// Defaults of the workers' memory management (Services).
const (
	// DefaultInstanceIdleTimeout is how long a pooled instance may stay unused before it is
	// closed and its memory given back; each version keeps its most recently used one.
	DefaultInstanceIdleTimeout = 30 * time.Second
	// DefaultMemoryWait bounds how long a request waits for memory under the registry's
	// memory limit (for a new instance, or for its instance to grow) before it fails.
	DefaultMemoryWait = time.Second
	// fallbackMemoryLimit is DefaultMemoryLimit when the machine's memory is unknown.
	fallbackMemoryLimit = 2 << 30
	// minMemoryLimit is the least DefaultMemoryLimit returns.
	minMemoryLimit = 256 << 20
)

// DefaultMemoryLimit is the cap on the linear memory of all instances when
// Services.MemoryLimit is zero: half of the memory available to the process (the machine's,
// or its cgroup's limit when lower), at least 256 MiB. The other half is left to the proxy,
// caches, storage and the Go runtime.
func DefaultMemoryLimit() int64 {
	m := availableMemory()
	if m <= 0 {
		return fallbackMemoryLimit
	}
	return max(m/2, minMemoryLimit)
}

// memoryBudget caps the sum of the linear memory of a registry's instances
// (wasm.MemoryAccount). When a charge would exceed the cap it first closes idle pooled
// instances (reclaim), then waits up to wait for memory to be released.
type memoryBudget struct {
	limit   int64 // <= 0: unlimited
	wait    time.Duration
	reclaim func()

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed (and replaced) whenever memory is released
}

var _ wasm.MemoryAccount = (*memoryBudget)(nil)

func newMemoryBudget(limit int64, wait time.Duration, reclaim func()) *memoryBudget {
	return &memoryBudget{limit: limit, wait: wait, reclaim: reclaim, freed: make(chan struct{})}
}

// Charge implements wasm.MemoryAccount.
func (b *memoryBudget) Charge(n int64) {
	b.mu.Lock()
	b.used += n
	b.mu.Unlock()
}

// Release implements wasm.MemoryAccount.
func (b *memoryBudget) Release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// Grow implements wasm.MemoryAccount.
func (b *memoryBudget) Grow(n int64) bool { return b.await(context.Background(), n) }

// reserve waits until n more bytes fit and takes them for a new instance, whose initial
// memory and growth during initialization draw on them (the reservation is its
// wasm.MemoryAccount); nil when they did not fit in time. Taking them at once, not when the
// instance charges its memory, is what keeps concurrent new instances within the limit.
func (b *memoryBudget) reserve(ctx context.Context, n int64) *reservation {
	if !b.await(ctx, n) {
		return nil
	}
	return &reservation{b: b, left: n}
}

// reservation is a new instance's account: it charges the budget for what exceeds the bytes
// reserved for it, and done gives back what the instance did not use.
type reservation struct {
	b    *memoryBudget
	left int64 // reserved, not yet used; 0 once done
}

var _ wasm.MemoryAccount = (*reservation)(nil)

// use takes up to n bytes from the reservation and returns how many it could not cover.
func (r *reservation) use(n int64) (taken, rest int64) {
	taken = min(n, r.left)
	r.left -= taken
	return taken, n - taken
}

// Charge implements wasm.MemoryAccount.
func (r *reservation) Charge(n int64) {
	if _, rest := r.use(n); rest > 0 {
		r.b.Charge(rest)
	}
}

// Grow implements wasm.MemoryAccount.
func (r *reservation) Grow(n int64) bool {
	taken, rest := r.use(n)
	if rest == 0 || r.b.Grow(rest) {
		return true
	}
	r.left += taken
	return false
}

// Release implements wasm.MemoryAccount.
func (r *reservation) Release(n int64) { r.b.Release(n) }

// done ends the instantiation: the reservation's unused bytes go back to the budget.
func (r *reservation) done() {
	if r.left > 0 {
		r.b.Release(r.left)
		r.left = 0
	}
}

func (b *memoryBudget) await(ctx context.Context, n int64) bool {
	if b.limit <= 0 {
		b.Charge(n)
		return true
	}
	var timer *time.Timer
	reclaimed := false
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		freed := b.freed
		b.mu.Unlock()
		if !reclaimed {
			reclaimed = true
			if b.reclaim != nil {
				b.reclaim()
			}
			continue
		}
		if timer == nil {
			timer = time.NewTimer(b.wait)
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			timer.Stop()
			return false
		}
	}
}

// inUse returns the bytes charged.
func (b *memoryBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// exhausted describes the budget for an error.
func (b *memoryBudget) exhausted() error {
	return fmt.Errorf("the workers' memory limit of %d MiB for all instances left no room in time (%d MiB in use now)", b.limit>>20, b.inUse()>>20)
}
