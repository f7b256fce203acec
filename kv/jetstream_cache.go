package kv

import (
	"sync"
	"sync/atomic"
)

// jsEntry is one key as a node knows it: the message of the key's latest revision in its
// bucket. An entry is never changed once published in an index, except for its value,
// which the cache may drop (and a read may fill again) and its reference bit.
type jsEntry struct {
	seq     uint64       // stream sequence of the revision
	deleted bool         // a tombstone: the key's latest revision deletes it
	meta    []byte       // nil when none
	exp     int64        // Unix seconds; zero when it does not expire
	size    int          // bytes of the value
	loaded  atomic.Int64 // UnixNano when read from JetStream outside the watch; 0 when from the watch or a local write
	val     atomic.Pointer[[]byte]
	ref     atomic.Bool // CLOCK reference bit, set by reads
	inCache atomic.Bool // accounted in the value cache
}

// value returns the cached value, or nil when it is not cached.
func (e *jsEntry) value() []byte {
	if p := e.val.Load(); p != nil {
		e.ref.Store(true)
		return *p
	}
	return nil
}

// valueCache bounds the bytes of cached values across all namespaces of a store. Eviction
// is CLOCK (an approximation of least recently used): reads only set an entry's reference
// bit, so cache hits take no lock.
type valueCache struct {
	max int64

	mu    sync.Mutex
	ring  []*jsEntry
	hand  int
	bytes int64
	live  int
}

func newValueCache(max int64) *valueCache { return &valueCache{max: max} }

// add caches v as e's value, evicting others to stay within the bound. Values larger than
// an eighth of the cache are not cached (the key stays indexed; reads fetch the value).
func (c *valueCache) add(e *jsEntry, v []byte) {
	if !c.fits(len(v)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.inCache.Load() {
		return
	}
	e.val.Store(&v)
	e.inCache.Store(true)
	c.ring = append(c.ring, e)
	c.bytes += int64(len(v))
	c.live++
	for c.bytes > c.max && c.live > 0 {
		c.evictOne()
	}
	if len(c.ring) > 2*c.live+64 {
		c.compact()
	}
}

// fits reports whether a value of size bytes is small enough to be cached.
func (c *valueCache) fits(size int) bool { return int64(size) <= c.max/8 }

// drop removes e's value from the cache (e was replaced or deleted).
func (c *valueCache) drop(e *jsEntry) {
	if !e.inCache.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release(e)
}

// release un-accounts e; c.mu is held.
func (c *valueCache) release(e *jsEntry) {
	if !e.inCache.Load() {
		return
	}
	e.inCache.Store(false)
	if p := e.val.Swap(nil); p != nil {
		c.bytes -= int64(len(*p))
	}
	c.live--
}

// evictOne advances the hand to an unreferenced entry and releases it; c.mu is held.
func (c *valueCache) evictOne() {
	for {
		if c.hand >= len(c.ring) {
			c.hand = 0
		}
		e := c.ring[c.hand]
		if !e.inCache.Load() {
			c.ring[c.hand] = c.ring[len(c.ring)-1]
			c.ring[len(c.ring)-1] = nil
			c.ring = c.ring[:len(c.ring)-1]
			continue
		}
		if e.ref.Swap(false) {
			c.hand++
			continue
		}
		c.release(e)
		c.hand++
		return
	}
}

// compact removes released entries from the ring; c.mu is held.
func (c *valueCache) compact() {
	out := c.ring[:0]
	for _, e := range c.ring {
		if e.inCache.Load() {
			out = append(out, e)
		}
	}
	clear(c.ring[len(out):])
	c.ring = out
	c.hand = 0
}

// stats returns the cached bytes and values.
func (c *valueCache) stats() (bytes int64, values int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.live
}
