package lb

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Ring sizing for ConsistentHash.
const (
	// PointsPerWeight is the number of ring points for each unit of weight (after dividing
	// all weights by their greatest common divisor).
	PointsPerWeight = 160
	// maxRingPoints caps the ring; above it every backend's share is scaled down.
	maxRingPoints = PointsPerWeight * 1024
)

// ConsistentHash maps a key to a backend on a hash ring (Ketama style): each backend owns
// PointsPerWeight points per unit of weight, placed by hashing its address, and a key goes to
// the owner of the first point at or after the key's hash. Adding or removing one of N
// backends moves only about 1/N of the keys. When the owner is not available the walk
// continues clockwise to the next available backend, so only that backend's keys move.
//
// The hash is 64-bit FNV-1a with a SplitMix64 finalizer: deterministic, so every Verge
// process maps a key to the same backend given the same set. An empty key cannot be hashed
// meaningfully and falls back to round robin. The zero value is ready to use.
type ConsistentHash struct {
	mu   sync.Mutex
	ring atomic.Pointer[hashRing]
	rr   RoundRobin
}

var _ Selector = (*ConsistentHash)(nil)

type hashRing struct {
	set    []*Backend
	points []uint64 // sorted
	owners []int32  // owners[i] is the index in set of points[i]
}

// Select returns the backend owning key's position on the ring.
func (c *ConsistentHash) Select(backends []*Backend, key []byte) *Backend {
	if len(backends) == 0 {
		return nil
	}
	if len(key) == 0 {
		return c.rr.Select(backends, nil)
	}
	r := c.ring.Load()
	if r == nil || !sameSet(r.set, backends) {
		r = c.rebuild(backends)
	}
	h := hash64(key)
	i, _ := slices.BinarySearch(r.points, h)
	n := len(r.points)
	last := int32(-1)
	for k := 0; k < n; k++ {
		o := r.owners[(i+k)%n]
		if o == last {
			continue
		}
		last = o
		if b := backends[o]; b.Available() {
			return b
		}
	}
	return nil
}

func (c *ConsistentHash) rebuild(backends []*Backend) *hashRing {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.ring.Load(); r != nil && sameSet(r.set, backends) {
		return r
	}
	r := buildRing(backends)
	c.ring.Store(r)
	return r
}

func buildRing(backends []*Backend) *hashRing {
	g := 0
	total := 0
	for _, b := range backends {
		g = gcd(g, b.Weight)
		total += b.Weight
	}
	per := PointsPerWeight
	if g > 1 {
		total /= g
	}
	// Scale down when the ring would be too large: keep at least one point per backend.
	scale := 1.0
	if total*per > maxRingPoints {
		scale = float64(maxRingPoints) / float64(total*per)
	}
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, min(total*per, maxRingPoints+len(backends)))
	for idx, b := range backends {
		n := int(float64(b.Weight/g*per) * scale)
		if n < 1 {
			n = 1
		}
		base := hashString(14695981039346656037, b.Address)
		for i := 0; i < n; i++ {
			h := hashString(hashString(base, "-"), strconv.Itoa(i))
			pts = append(pts, point{mix64(h), int32(idx)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		// Equal hashes: order by address so every process builds the same ring.
		return compareStrings(backends[a.owner].Address, backends[b.owner].Address)
	})
	r := &hashRing{set: backends, points: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for i, p := range pts {
		r.points[i], r.owners[i] = p.h, p.owner
	}
	return r
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
