package lb

import (
	"math"
	"testing"
)

func TestRoundRobinOrder(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		drained []int
		want    []int
	}{
		{"all up", 3, nil, []int{0, 1, 2, 0, 1, 2, 0}},
		{"middle drained", 3, []int{1}, []int{0, 2, 0, 2, 0, 2}},
		{"single", 1, nil, []int{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := &RoundRobin{}
			lb := newTestBalancer(t, rr, ones(tt.n)...)
			bs := lb.Backends()
			for _, i := range tt.drained {
				bs[i].Drain()
			}
			for k, want := range tt.want {
				if got := indexOf(bs, rr.Select(bs, nil)); got != want {
					t.Fatalf("pick %d: got backend %d, want %d", k, got, want)
				}
			}
		})
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		seq     []int // expected first picks
	}{
		// NGINX's smooth sequence for weights 5,1,1.
		{"5-1-1", []int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}},
		{"1-1", []int{1, 1}, []int{0, 1, 0, 1}},
		{"3-2", []int{3, 2}, []int{0, 1, 0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &WeightedRoundRobin{}
			lb := newTestBalancer(t, w, tt.weights...)
			bs := lb.Backends()
			for k, want := range tt.seq {
				if got := indexOf(bs, w.Select(bs, nil)); got != want {
					t.Fatalf("pick %d: got backend %d, want %d", k, got, want)
				}
			}
			// Over many full cycles the counts are exactly proportional to the weights.
			total := 0
			for _, x := range tt.weights {
				total += x
			}
			counts := make([]int, len(bs))
			for range 100 * total {
				counts[indexOf(bs, w.Select(bs, nil))]++
			}
			for i, x := range tt.weights {
				if counts[i] != 100*x {
					t.Errorf("backend %d: got %d picks, want %d", i, counts[i], 100*x)
				}
			}
		})
	}
}

func TestRandomWeighted(t *testing.T) {
	lb := newTestBalancer(t, Random{}, 1, 3, 0)
	bs := lb.Backends() // weight 0 means 1: shares 1/5, 3/5, 1/5
	const n = 50000
	counts := make([]int, len(bs))
	for range n {
		counts[indexOf(bs, Random{}.Select(bs, nil))]++
	}
	for i, want := range []float64{0.2, 0.6, 0.2} {
		if got := float64(counts[i]) / n; math.Abs(got-want) > 0.02 {
			t.Errorf("backend %d: got share %.3f, want %.2f±0.02", i, got, want)
		}
	}
}

func TestLeastConn(t *testing.T) {
	lc := &LeastConn{}
	lb := newTestBalancer(t, lc, 1, 1, 1)
	bs := lb.Backends()
	// Ties rotate.
	var seen [3]bool
	for range 3 {
		seen[indexOf(bs, lc.Select(bs, nil))] = true
	}
	if seen != [3]bool{true, true, true} {
		t.Fatalf("ties: got picks %v, want every backend once", seen)
	}
	bs[0].st.inflight.Store(4)
	bs[1].st.inflight.Store(2)
	bs[2].st.inflight.Store(0)
	for k := range 5 {
		if got := indexOf(bs, lc.Select(bs, nil)); got != 2 {
			t.Fatalf("pick %d: got backend %d, want the idle backend 2", k, got)
		}
	}
	// Through the Balancer the in-flight counts move: 4,2,0 fills up to 4,4,4.
	for range 6 {
		lb.Select(nil)
	}
	for i, b := range bs {
		if got := b.InFlight(); got != 4 {
			t.Errorf("backend %d: got %d in flight, want 4", i, got)
		}
	}
}

func TestLeastConnWeighted(t *testing.T) {
	lc := &LeastConn{}
	lb := newTestBalancer(t, lc, 1, 3)
	for range 40 {
		lb.Select(nil)
	}
	bs := lb.Backends()
	if got0, got1 := bs[0].InFlight(), bs[1].InFlight(); got0 != 10 || got1 != 30 {
		t.Fatalf("got in flight %d/%d, want 10/30 for weights 1/3", got0, got1)
	}
}

func TestPowerOfTwo(t *testing.T) {
	tests := []struct {
		name     string
		inflight []int64
		minShare float64 // of picks going to backend 0
	}{
		{"two backends", []int64{0, 100}, 1},
		// Uniform random would give 25%; p2c picks the idle one whenever it is drawn: 50%.
		{"one idle of four", []int64{0, 5, 5, 5}, 0.45},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb := newTestBalancer(t, PowerOfTwo{}, ones(len(tt.inflight))...)
			bs := lb.Backends()
			for i, n := range tt.inflight {
				bs[i].st.inflight.Store(n)
			}
			const n = 20000
			hits := 0
			var p2c PowerOfTwo
			for range n {
				if p2c.Select(bs, nil) == bs[0] {
					hits++
				}
			}
			if share := float64(hits) / n; share < tt.minShare {
				t.Errorf("got share %.3f for the idle backend, want >= %.2f", share, tt.minShare)
			}
		})
	}
}

func TestNoneAvailable(t *testing.T) {
	policies := map[string]Selector{
		"roundrobin": &RoundRobin{}, "weighted": &WeightedRoundRobin{}, "random": Random{},
		"p2c": PowerOfTwo{}, "leastconn": &LeastConn{}, "hash": &ConsistentHash{},
	}
	for name, sel := range policies {
		t.Run(name, func(t *testing.T) {
			lb := newTestBalancer(t, sel, 1, 2, 3)
			if got := sel.Select(nil, []byte("k")); got != nil {
				t.Fatalf("empty set: got %s, want nil", got.Address)
			}
			bs := lb.Backends()
			for _, b := range bs[:2] {
				b.Drain()
			}
			for range 10 {
				if got := lb.Select([]byte("key")); got != bs[2] {
					t.Fatalf("got %v, want the only available backend", got)
				}
				lb.Report(bs[2], nil)
			}
			bs[2].Drain()
			if got := lb.Select([]byte("key")); got != nil {
				t.Fatalf("all drained: got %s, want nil", got.Address)
			}
		})
	}
}
