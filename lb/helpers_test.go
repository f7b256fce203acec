package lb

import (
	"fmt"
	"testing"
)

// newTestBalancer builds a Balancer over 127.0.0.1 backends with the given weights (ports
// 10001, 10002, ...) and closes it when the test ends.
func newTestBalancer(tb testing.TB, sel Selector, weights ...int) *Balancer {
	tb.Helper()
	cfgs := make([]BackendConfig, len(weights))
	for i, w := range weights {
		cfgs[i] = BackendConfig{Address: fmt.Sprintf("127.0.0.1:%d", 10001+i), Weight: w}
	}
	lb, err := New(Options{Backends: cfgs, Selector: sel})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { lb.Close() })
	return lb
}

// ones returns n weights of 1.
func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// indexOf returns b's position in bs, or -1.
func indexOf(bs []*Backend, b *Backend) int {
	for i, x := range bs {
		if x == b {
			return i
		}
	}
	return -1
}
