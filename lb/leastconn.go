package lb

import "sync/atomic"

// LeastConn picks the available backend with the fewest requests in flight relative to its
// weight. Ties are broken round robin: the scan starts one backend further at each pick and
// the first of the equally loaded wins. The zero value is ready to use.
type LeastConn struct {
	next atomic.Uint64
}

var _ Selector = (*LeastConn)(nil)

// Select returns the least loaded available backend.
func (l *LeastConn) Select(backends []*Backend, _ []byte) *Backend {
	n := uint64(len(backends))
	if n == 0 {
		return nil
	}
	start := l.next.Add(1) - 1
	var best *Backend
	for i := uint64(0); i < n; i++ {
		b := backends[(start+i)%n]
		if !b.Available() {
			continue
		}
		if best == nil || lessLoaded(b, best) {
			best = b
		}
	}
	return best
}
