package worker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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

// memoryBudget caps the sum of the linear memory of a registry's instances. Each worker
// draws on it through its own memShare, so that one tenant cannot take the memory of the
// others: when a charge would exceed the cap, the budget closes the idle pooled instances of
// the asking worker and of workers over their fair share (the cap divided by the number of
// workers holding memory), never those of workers within it. A worker over its fair share is
// then refused at once; one within it waits up to wait for memory, which workers over their
// share give back as their running instances finish (see shed).
type memoryBudget struct {
	limit int64 // <= 0: unlimited
	wait  time.Duration

	mu      sync.Mutex
	used    int64
	holders map[*memShare]struct{} // the shares with memory charged
	waiters atomic.Int32           // requests waiting for memory (await)
	freed   chan struct{}          // closed (and replaced) whenever memory is released
}

func newMemoryBudget(limit int64, wait time.Duration) *memoryBudget {
	return &memoryBudget{limit: limit, wait: wait, holders: map[*memShare]struct{}{}, freed: make(chan struct{})}
}

// memShare is one worker's account in a memoryBudget: what its instances hold, and how to
// close its idle ones.
type memShare struct {
	b    *memoryBudget
	trim func() // closes the worker's idle pooled instances; may be nil
	used int64  // guarded by b.mu
}

var _ wasm.MemoryAccount = (*memShare)(nil)

// share returns a new worker's account; trim closes the worker's idle pooled instances.
func (b *memoryBudget) share(trim func()) *memShare { return &memShare{b: b, trim: trim} }

// addLocked charges n (negative: releases) to s and the budget.
func (s *memShare) addLocked(n int64) {
	b := s.b
	b.used += n
	was := s.used
	s.used += n
	switch {
	case was <= 0 && s.used > 0:
		b.holders[s] = struct{}{}
	case was > 0 && s.used <= 0:
		delete(b.holders, s)
	}
}

// Charge implements wasm.MemoryAccount.
func (s *memShare) Charge(n int64) {
	s.b.mu.Lock()
	s.addLocked(n)
	s.b.mu.Unlock()
}

// Release implements wasm.MemoryAccount.
func (s *memShare) Release(n int64) {
	b := s.b
	b.mu.Lock()
	s.addLocked(-n)
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// Grow implements wasm.MemoryAccount.
func (s *memShare) Grow(n int64) bool { return s.await(context.Background(), n) }

// fairLocked is the fair share of s: the limit divided among the workers holding memory,
// s included. alone reports that no other worker holds any.
func (s *memShare) fairLocked() (fair int64, alone bool) {
	n := len(s.b.holders)
	if s.used <= 0 {
		n++
	}
	return s.b.limit / int64(n), n == 1
}

// overLocked reports whether s holds more than its fair share while others hold memory too.
func (s *memShare) overLocked(n int64) bool {
	fair, alone := s.fairLocked()
	return !alone && s.used+n > fair
}

// shed reports whether an instance of s that finished its request should be closed rather
// than pooled: other requests wait for memory and s holds more than its fair share.
func (s *memShare) shed() bool {
	b := s.b
	if b.limit <= 0 || b.waiters.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return s.overLocked(0)
}

// reserve waits until n more bytes fit and takes them for a new instance, whose initial
// memory and growth during initialization draw on them (the reservation is its
// wasm.MemoryAccount); nil when they did not fit in time. Taking them at once, not when the
// instance charges its memory, is what keeps concurrent new instances within the limit.
func (s *memShare) reserve(ctx context.Context, n int64) *reservation {
	if !s.await(ctx, n) {
		return nil
	}
	return &reservation{s: s, left: n}
}

// reservation is a new instance's account: it charges the worker's share for what exceeds
// the bytes reserved for it, and done gives back what the instance did not use.
type reservation struct {
	s    *memShare
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
		r.s.Charge(rest)
	}
}

// Grow implements wasm.MemoryAccount.
func (r *reservation) Grow(n int64) bool {
	taken, rest := r.use(n)
	if rest == 0 || r.s.Grow(rest) {
		return true
	}
	r.left += taken
	return false
}

// Release implements wasm.MemoryAccount.
func (r *reservation) Release(n int64) { r.s.Release(n) }

// done ends the instantiation: the reservation's unused bytes go back to the budget.
func (r *reservation) done() {
	if r.left > 0 {
		r.s.Release(r.left)
		r.left = 0
	}
}

// await takes n bytes for s when they fit under the limit. When they do not, it first closes
// the idle instances of s and of the workers over their fair share; then it refuses s at once
// if s is over its own fair share, and otherwise waits up to b.wait for memory.
func (s *memShare) await(ctx context.Context, n int64) bool {
	b := s.b
	if b.limit <= 0 {
		s.Charge(n)
		return true
	}
	var timer *time.Timer
	reclaimed, waiting := false, false
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if waiting {
			b.waiters.Add(-1)
		}
	}()
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			s.addLocked(n)
			b.mu.Unlock()
			return true
		}
		if !reclaimed {
			reclaimed = true
			trims := s.reclaimLocked()
			b.mu.Unlock()
			for _, trim := range trims {
				trim()
			}
			continue
		}
		if s.overLocked(n) {
			b.mu.Unlock()
			return false
		}
		if !waiting {
			waiting = true
			b.waiters.Add(1)
		}
		freed := b.freed
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(b.wait)
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// reclaimLocked returns the trim functions to run when memory is short for s: its own, and
// those of the other workers over their fair share. Workers within their share keep their
// warm instances.
func (s *memShare) reclaimLocked() []func() {
	var trims []func()
	if s.trim != nil && s.used > 0 {
		trims = append(trims, s.trim)
	}
	for o := range s.b.holders {
		if o != s && o.trim != nil && o.overLocked(0) {
			trims = append(trims, o.trim)
		}
	}
	return trims
}

// inUse returns the bytes charged.
func (b *memoryBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// exhausted describes the budget for an error about s.
func (s *memShare) exhausted() error {
	b := s.b
	b.mu.Lock()
	used, mine := b.used, s.used
	fair, _ := s.fairLocked()
	b.mu.Unlock()
	return fmt.Errorf("the workers' memory limit of %d MiB for all instances left no room in time (%d MiB in use now, %d MiB by this worker, whose fair share is %d MiB)",
		b.limit>>20, used>>20, mine>>20, fair>>20)
}
