package lb

import "math/rand/v2"

// PowerOfTwo picks two available backends at random and sends the request to the one with
// fewer requests in flight relative to its weight ("power of two choices"). It has no state;
// the zero value is ready to use.
type PowerOfTwo struct{}

var _ Selector = (*PowerOfTwo)(nil)

// Select returns the less loaded of two random available backends.
func (PowerOfTwo) Select(backends []*Backend, _ []byte) *Backend {
	n := len(backends)
	if n == 0 {
		return nil
	}
	i := nextAvailable(backends, rand.IntN(n))
	if i < 0 {
		return nil
	}
	if n == 1 {
		return backends[i]
	}
	// A random other index, then the next available one after it that is not i.
	j := (i + 1 + rand.IntN(n-1)) % n
	for k := 0; k < n; k++ {
		c := (j + k) % n
		if c != i && backends[c].Available() {
			if lessLoaded(backends[c], backends[i]) {
				return backends[c]
			}
			return backends[i]
		}
	}
	return backends[i]
}

// nextAvailable returns the index of the first available backend at or after start
// (wrapping), or -1.
func nextAvailable(backends []*Backend, start int) int {
	n := len(backends)
	for k := 0; k < n; k++ {
		if i := (start + k) % n; backends[i].Available() {
			return i
		}
	}
	return -1
}

// lessLoaded reports whether a has strictly fewer in-flight requests per unit of weight than
// b, comparing a.inflight/a.weight with b.inflight/b.weight without division.
func lessLoaded(a, b *Backend) bool {
	return a.InFlight()*int64(b.Weight) < b.InFlight()*int64(a.Weight)
}
