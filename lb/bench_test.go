package lb

import (
	"strconv"
	"testing"
)

func benchPolicies() []struct {
	name string
	sel  func() Selector
} {
	return []struct {
		name string
		sel  func() Selector
	}{
		{"RoundRobin", func() Selector { return &RoundRobin{} }},
		{"WeightedRoundRobin", func() Selector { return &WeightedRoundRobin{} }},
		{"Random", func() Selector { return Random{} }},
		{"PowerOfTwo", func() Selector { return PowerOfTwo{} }},
		{"LeastConn", func() Selector { return &LeastConn{} }},
		{"ConsistentHash", func() Selector { return &ConsistentHash{} }},
	}
}

// BenchmarkSelect measures Balancer.Select plus Report over 10 backends: the per-request
// cost of load balancing. It must not allocate.
func BenchmarkSelect(b *testing.B) {
	keys := make([][]byte, 256)
	for i := range keys {
		keys[i] = []byte("client-" + strconv.Itoa(i))
	}
	for _, p := range benchPolicies() {
		b.Run(p.name, func(b *testing.B) {
			lb := newTestBalancer(b, p.sel(), 1, 2, 3, 1, 2, 3, 1, 2, 3, 1)
			lb.Report(lb.Select(keys[0]), nil) // build lazy state (hash ring, weights)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				be := lb.Select(keys[i&255])
				lb.Report(be, nil)
			}
		})
	}
}

// BenchmarkSelectParallel is BenchmarkSelect from all Ps at once.
func BenchmarkSelectParallel(b *testing.B) {
	for _, p := range benchPolicies() {
		b.Run(p.name, func(b *testing.B) {
			lb := newTestBalancer(b, p.sel(), ones(10)...)
			key := []byte("client-1")
			lb.Report(lb.Select(key), nil)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					be := lb.Select(key)
					be.Done(true)
				}
			})
		})
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	for _, p := range benchPolicies() {
		lb := newTestBalancer(t, p.sel(), 1, 2, 3)
		key := []byte("k")
		lb.Report(lb.Select(key), nil)
		allocs := testing.AllocsPerRun(100, func() {
			lb.Report(lb.Select(key), nil)
		})
		if allocs != 0 {
			t.Errorf("%s: got %.1f allocs per Select+Report, want 0", p.name, allocs)
		}
	}
}
