package ai

import (
	"sync"
	"time"
)

// tokenBudget counts each identity's tokens in fixed windows of period. The identities are
// the gateway's configured keys (or client addresses without keys), so the map is bounded by
// maxIdentities: beyond it, the tokens of identities new to the window are not counted until
// the next window starts (the rate limit still applies to them).
type tokenBudget struct {
	limit  int64
	period time.Duration

	mu     sync.Mutex
	window int64 // index of the current window
	used   map[string]int64
}

// maxIdentities bounds the identities a budget tracks in one window.
const maxIdentities = 1 << 16

func newTokenBudget(limit int64, period time.Duration) *tokenBudget {
	return &tokenBudget{limit: limit, period: period, used: map[string]int64{}}
}

func (b *tokenBudget) roll(now time.Time) {
	if w := now.UnixNano() / int64(b.period); w != b.window {
		b.window = w
		clear(b.used)
	}
}

// allow reports whether id has tokens left, and how long until its budget is whole again.
func (b *tokenBudget) allow(id string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	if b.used[id] < b.limit {
		return true, 0
	}
	next := time.Unix(0, (b.window+1)*int64(b.period))
	return false, next.Sub(now)
}

// add counts n tokens of id.
func (b *tokenBudget) add(id string, n int64, now time.Time) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	if _, ok := b.used[id]; !ok && len(b.used) >= maxIdentities {
		return // a flood of anonymous addresses; the rate limit still applies to them
	}
	b.used[id] += n
}

// remaining returns id's tokens left in the current window.
func (b *tokenBudget) remaining(id string, now time.Time) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll(now)
	return max(b.limit-b.used[id], 0)
}
