package cache

import (
	"cmp"
	"container/heap"
	"slices"
)

// MaxTopKeys bounds the n of TopKeys.
const MaxTopKeys = 100

// KeyHits is one object of TopKeys.
type KeyHits struct {
	// URL is the object's URL (scheme, host and target as the key saw them).
	URL string
	// Hits counts the requests served from the object since it entered the memory tier.
	Hits uint64
	// Size is the body's length in bytes, -1 while unknown (still being stored).
	Size int64
}

// TopKeys returns the n objects of the memory tier that served the most requests, most
// first (n is capped at MaxTopKeys). Objects held only on disk are not counted, and Cache
// API entries are left out. It walks the whole memory tier, so call it on demand (the
// dashboard does every few seconds), not per request.
func (c *Cache) TopKeys(n int) []KeyHits {
	n = min(max(n, 0), MaxTopKeys)
	if n == 0 {
		return nil
	}
	h := make(keyHeap, 0, n)
	for _, o := range c.mem.All() {
		hits := o.hits.Load()
		if hits == 0 || apiNamespace(o.m.Key) != "" {
			continue
		}
		if len(h) == n && hits <= h[0].hits {
			continue
		}
		k := keyObject{hits: hits, o: o}
		if len(h) < n {
			heap.Push(&h, k)
		} else {
			h[0] = k
			heap.Fix(&h, 0)
		}
	}
	out := make([]KeyHits, 0, len(h))
	for _, k := range h {
		size, known := k.o.length()
		if !known {
			size = -1
		}
		out = append(out, KeyHits{URL: k.o.m.URL, Hits: k.hits, Size: size})
	}
	slices.SortFunc(out, func(a, b KeyHits) int {
		return cmp.Or(cmp.Compare(b.Hits, a.Hits), cmp.Compare(a.URL, b.URL))
	})
	return out
}

type keyObject struct {
	hits uint64
	o    *object
}

// keyHeap is a min-heap by hits: the root is the least of the n kept.
type keyHeap []keyObject

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].hits < h[j].hits }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(keyObject)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
