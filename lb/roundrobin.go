package lb

import "sync/atomic"

// RoundRobin cycles through the available backends in order, ignoring weights. The zero
// value is ready to use.
type RoundRobin struct {
	next atomic.Uint64
}

var _ Selector = (*RoundRobin)(nil)

// Select returns the next available backend after the previous pick.
func (r *RoundRobin) Select(backends []*Backend, _ []byte) *Backend {
	n := uint64(len(backends))
	if n == 0 {
		return nil
	}
	start := r.next.Add(1) - 1
	for i := uint64(0); i < n; i++ {
		if b := backends[(start+i)%n]; b.Available() {
			if i != 0 {
				// Skip over the unavailable ones so the next pick follows this one.
				r.next.Add(i)
			}
			return b
		}
	}
	return nil
}
