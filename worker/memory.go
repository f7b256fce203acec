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
func (b *memoryBudget) Grow(n int64) bool { return b.await(context.Background(), n, true) }

// admit waits until n more bytes fit, without taking them: a new instance's initial memory
// is charged when it is created.
func (b *memoryBudget) admit(ctx context.Context, n int64) bool { return b.await(ctx, n, false) }

func (b *memoryBudget) await(ctx context.Context, n int64, take bool) bool {
	if b.limit <= 0 {
		if take {
			b.Charge(n)
		}
		return true
	}
	var timer *time.Timer
	reclaimed := false
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			if take {
				b.used += n
			}
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
