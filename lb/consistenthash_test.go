package lb

import (
	"fmt"
	"strconv"
	"testing"
)

// hashBackends returns n unbound backends 10.0.0.i:80 with private state, for ring tests
// that build several sets sharing addresses.
func hashBackends(t *testing.T, addrs ...string) []*Backend {
	t.Helper()
	cfgs := make([]BackendConfig, len(addrs))
	for i, a := range addrs {
		cfgs[i] = BackendConfig{Address: a}
	}
	lb, err := New(Options{Backends: cfgs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	return lb.Backends()
}

func addrs(n int) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = fmt.Sprintf("10.0.0.%d:80", i+1)
	}
	return a
}

const hashKeys = 10000

// assign maps hashKeys keys to backend addresses.
func assign(t *testing.T, bs []*Backend) []string {
	t.Helper()
	var c ConsistentHash
	out := make([]string, hashKeys)
	key := make([]byte, 0, 32)
	for i := range out {
		key = strconv.AppendInt(append(key[:0], "user-"...), int64(i), 10)
		b := c.Select(bs, key)
		if b == nil {
			t.Fatalf("key %d: got nil backend", i)
		}
		out[i] = b.Address
	}
	return out
}

func TestConsistentHashStable(t *testing.T) {
	bs := hashBackends(t, addrs(10)...)
	a, b := assign(t, bs), assign(t, bs)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("key %d: got %s then %s, want the same backend", i, a[i], b[i])
		}
	}
	// Known mapping: the hash is deterministic across processes and releases.
	var c ConsistentHash
	first := c.Select(bs, []byte("user-0")).Address
	if again := c.Select(hashBackends(t, addrs(10)...), []byte("user-0")).Address; again != first {
		t.Fatalf("rebuilt ring: got %s, want %s", again, first)
	}
	// Every backend gets a fair share: 1000 keys each ± 35%.
	count := map[string]int{}
	for _, x := range a {
		count[x]++
	}
	for _, ad := range addrs(10) {
		if n := count[ad]; n < 650 || n > 1350 {
			t.Errorf("%s: got %d of %d keys, want about %d", ad, n, hashKeys, hashKeys/10)
		}
	}
}

func TestConsistentHashMembership(t *testing.T) {
	tests := []struct {
		name       string
		before     []string
		after      []string
		minMoved   float64
		maxMoved   float64
		onlyMoveTo string // every moved key must land here ("" to skip)
		onlyFrom   string // every moved key must come from here ("" to skip)
	}{
		{
			name: "add 1 to 10", before: addrs(10), after: addrs(11),
			minMoved: 0.05, maxMoved: 0.15, onlyMoveTo: "10.0.0.11:80",
		},
		{
			name: "remove 1 of 11", before: addrs(11), after: addrs(10),
			minMoved: 0.05, maxMoved: 0.15, onlyFrom: "10.0.0.11:80",
		},
		{
			name: "remove middle of 10", before: addrs(10), after: append(addrs(4), addrs(10)[5:]...),
			minMoved: 0.05, maxMoved: 0.16, onlyFrom: "10.0.0.5:80",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := assign(t, hashBackends(t, tt.before...))
			b := assign(t, hashBackends(t, tt.after...))
			moved := 0
			for i := range a {
				if a[i] == b[i] {
					continue
				}
				moved++
				if tt.onlyMoveTo != "" && b[i] != tt.onlyMoveTo {
					t.Fatalf("key %d moved %s -> %s, want moves only to %s", i, a[i], b[i], tt.onlyMoveTo)
				}
				if tt.onlyFrom != "" && a[i] != tt.onlyFrom {
					t.Fatalf("key %d moved %s -> %s, want moves only from %s", i, a[i], b[i], tt.onlyFrom)
				}
			}
			share := float64(moved) / hashKeys
			if share < tt.minMoved || share > tt.maxMoved {
				t.Errorf("got %.3f of keys moved, want %.2f..%.2f", share, tt.minMoved, tt.maxMoved)
			}
		})
	}
}

func TestConsistentHashUnavailable(t *testing.T) {
	bs := hashBackends(t, addrs(10)...)
	a := assign(t, bs)
	bs[3].Drain()
	b := assign(t, bs)
	for i := range a {
		if a[i] != b[i] && a[i] != bs[3].Address {
			t.Fatalf("key %d moved %s -> %s though only %s left", i, a[i], b[i], bs[3].Address)
		}
		if b[i] == bs[3].Address {
			t.Fatalf("key %d still on the drained backend", i)
		}
	}
	bs[3].Undrain()
	c := assign(t, bs)
	for i := range a {
		if a[i] != c[i] {
			t.Fatalf("key %d: got %s after undrain, want %s back", i, c[i], a[i])
		}
	}
}

func TestConsistentHashWeights(t *testing.T) {
	lb, err := New(Options{Backends: []BackendConfig{
		{Address: "10.0.0.1:80", Weight: 100}, {Address: "10.0.0.2:80", Weight: 300},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	a := assign(t, lb.Backends())
	n := 0
	for _, x := range a {
		if x == "10.0.0.2:80" {
			n++
		}
	}
	if share := float64(n) / hashKeys; share < 0.65 || share > 0.85 {
		t.Errorf("weight 300 of 400: got share %.3f, want about 0.75", share)
	}
	var c ConsistentHash
	bs := lb.Backends()
	c.Select(bs, []byte("x"))
	if got, want := len(c.ring.Load().points), 4*PointsPerWeight; got != want {
		t.Errorf("ring points: got %d, want %d (weights divided by their gcd)", got, want)
	}
}

func TestConsistentHashEmptyKeyRoundRobin(t *testing.T) {
	bs := hashBackends(t, addrs(3)...)
	var c ConsistentHash
	for k, want := range []int{0, 1, 2, 0} {
		if got := indexOf(bs, c.Select(bs, nil)); got != want {
			t.Fatalf("pick %d: got %d, want %d", k, got, want)
		}
	}
}
