package lb

import "sync"

// WeightedRoundRobin is smooth weighted round robin, as in NGINX: each pick adds every
// available backend's weight to its current score, picks the highest score and subtracts the
// total weight from it. Over sum(weights) picks each backend is chosen weight times, spread
// out rather than in bursts. The zero value is ready to use.
type WeightedRoundRobin struct {
	mu      sync.Mutex
	set     []*Backend
	current []int64
}

var _ Selector = (*WeightedRoundRobin)(nil)

// Select returns the available backend with the highest smooth score.
func (w *WeightedRoundRobin) Select(backends []*Backend, _ []byte) *Backend {
	if len(backends) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !sameSet(w.set, backends) {
		w.set = backends
		w.current = make([]int64, len(backends))
	}
	var total int64
	best := -1
	for i, b := range backends {
		if !b.Available() {
			continue
		}
		wt := int64(b.Weight)
		w.current[i] += wt
		total += wt
		if best < 0 || w.current[i] > w.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	w.current[best] -= total
	return backends[best]
}
