package lb

import "math/rand/v2"

// Random picks an available backend at random, with probability proportional to its
// weight. It has no state; the zero value is ready to use.
type Random struct{}

var _ Selector = (*Random)(nil)

// Select returns a weighted random available backend.
func (Random) Select(backends []*Backend, _ []byte) *Backend {
	var total int
	for _, b := range backends {
		if b.Available() {
			total += b.Weight
		}
	}
	if total == 0 {
		return nil
	}
	r := rand.IntN(total)
	for _, b := range backends {
		if !b.Available() {
			continue
		}
		if r < b.Weight {
			return b
		}
		r -= b.Weight
	}
	// The set changed availability between the passes; take the last available one.
	for i := len(backends) - 1; i >= 0; i-- {
		if backends[i].Available() {
			return backends[i]
		}
	}
	return nil
}
