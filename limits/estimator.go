// Package limits counts and limits events per key in fixed memory, for rate limits in the
// proxy's phases and in programs built on it.
//
// Every type here keeps a sketch of d rows of w counters, however many distinct keys it sees:
// a million keys cost the same memory as ten. The price is a bounded overestimate. A key
// shares each of its d counters with the keys that hash to the same column of that row, and
// reading takes the smallest of the d, so an answer is never below the key's true count and
// exceeds it by more than ε·N (N the total of all keys in the sketch, ε = e/w) with
// probability at most δ = e^-d (Cormode and Muthukrishnan's count-min sketch). For limits
// this means a key is never let through above its limit; a light key may be limited early
// only when all d of its counters are shared with heavy keys.
//
// Keys are byte strings hashed with a per-process random seed, so a client can't choose keys
// that collide on purpose.
package limits

import (
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
)

// Estimator is a count-min sketch of int64 counters, safe for concurrent use without locks.
type Estimator struct {
	rows  int
	mask  uint64 // width-1; width is a power of two
	cells []atomic.Int64
	seed  maphash.Seed
}

// NewEstimator returns a sketch of depth rows of width counters (width rounded up to a power
// of two). It uses 8·depth·width bytes.
func NewEstimator(depth, width int) *Estimator {
	if depth < 1 {
		depth = 1
	}
	if width < 2 {
		width = 2
	}
	w := 1 << bits.Len(uint(width-1))
	return &Estimator{rows: depth, mask: uint64(w - 1), cells: make([]atomic.Int64, depth*w), seed: maphash.MakeSeed()}
}

// NewEstimatorFor returns the smallest sketch whose estimates exceed a key's true count by
// more than epsilon times the sketch's total with probability at most delta.
func NewEstimatorFor(epsilon, delta float64) *Estimator {
	w, d := SizeFor(epsilon, delta)
	return NewEstimator(d, w)
}

// SizeFor is the width (a power of two) and depth of a sketch with error epsilon·N at
// probability delta: width ≥ e/epsilon, depth = ⌈ln(1/delta)⌉.
func SizeFor(epsilon, delta float64) (width, depth int) {
	if epsilon <= 0 || epsilon >= 1 {
		epsilon = 0.001
	}
	if delta <= 0 || delta >= 1 {
		delta = 0.001
	}
	w := int(math.Ceil(math.E / epsilon))
	w = 1 << bits.Len(uint(w-1))
	return w, int(math.Ceil(math.Log(1 / delta)))
}

// Depth is the number of rows.
func (e *Estimator) Depth() int { return e.rows }

// Width is the number of counters in a row.
func (e *Estimator) Width() int { return int(e.mask + 1) }

// Epsilon is the error bound's factor: an estimate exceeds the true count by more than
// Epsilon()·Total with probability at most Delta().
func (e *Estimator) Epsilon() float64 { return math.E / float64(e.mask+1) }

// Delta is the probability that an estimate is off by more than Epsilon()·Total.
func (e *Estimator) Delta() float64 { return math.Exp(-float64(e.rows)) }

// Hash is the hash the sketch uses for key; IncrHash and GetHash take it, so that a caller
// that consults several sketches hashes once.
func (e *Estimator) Hash(key []byte) uint64 { return maphash.Bytes(e.seed, key) }

// HashString is Hash of a string key.
func (e *Estimator) HashString(key string) uint64 { return maphash.String(e.seed, key) }

// column is row i's counter for hash h: double hashing (h1 + i·h2) gives d independent
// enough columns from one 64-bit hash.
func (e *Estimator) column(h uint64, i int) int {
	h1, h2 := h, (h>>32|h<<32)|1
	return i*int(e.mask+1) + int((h1+uint64(i)*h2)&e.mask)
}

// Incr adds n to key's count and returns its new estimate.
func (e *Estimator) Incr(key []byte, n int64) int64 { return e.IncrHash(e.Hash(key), n) }

// IncrHash is Incr for a key hashed with Hash.
func (e *Estimator) IncrHash(h uint64, n int64) int64 {
	min := int64(math.MaxInt64)
	for i := range e.rows {
		if v := e.cells[e.column(h, i)].Add(n); v < min {
			min = v
		}
	}
	return min
}

// Get returns key's estimate.
func (e *Estimator) Get(key []byte) int64 { return e.GetHash(e.Hash(key)) }

// GetHash is Get for a key hashed with Hash.
func (e *Estimator) GetHash(h uint64) int64 {
	min := int64(math.MaxInt64)
	for i := range e.rows {
		if v := e.cells[e.column(h, i)].Load(); v < min {
			min = v
		}
	}
	return min
}

// fresh returns an empty sketch of the same size and seed.
func (e *Estimator) fresh() *Estimator {
	return &Estimator{rows: e.rows, mask: e.mask, cells: make([]atomic.Int64, len(e.cells)), seed: e.seed}
}

// Reset sets every counter to zero. Increments racing with it may survive it.
func (e *Estimator) Reset() {
	for i := range e.cells {
		e.cells[i].Store(0)
	}
}

// Keys estimates how many distinct keys have a non-zero count, from the share of zero
// counters in the first row (linear counting): accurate while that is well below the width,
// and the width when the row is full.
func (e *Estimator) Keys() int {
	w := int(e.mask + 1)
	zero := 0
	for i := range w {
		if e.cells[i].Load() == 0 {
			zero++
		}
	}
	if zero == 0 {
		return w
	}
	return int(math.Round(-float64(w) * math.Log(float64(zero)/float64(w))))
}
