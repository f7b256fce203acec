package ai

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"
)

// cacheKey is the SHA-256 of the path, the client identity ("" when shared) and the
// request body normalised: parsed and written again with object keys sorted and no
// insignificant white space, so that requests differing only in layout or key order meet.
// ok is false when the body is not JSON.
func cacheKey(path, identity string, body []byte) (key [32]byte, ok bool) {
	key, _, ok = normalizedKey(path, identity, body)
	return key, ok
}

// normalizedKey is cacheKey that also returns the normalised body, which is what the gateway
// sends the provider when it caches: the answer stored under the key is then the answer to
// exactly the request the key describes, whatever the provider's JSON parser makes of a
// body the normalisation changes (a duplicate key, which Go resolves to the last value and
// another parser may resolve to the first, would otherwise let one client store the answer
// to one prompt under another prompt's key in a shared cache).
func normalizedKey(path, identity string, body []byte) (key [32]byte, norm []byte, ok bool) {
	var v any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if d.Decode(&v) != nil || d.More() {
		return key, nil, false
	}
	norm, err := json.Marshal(v) // maps are written with sorted keys
	if err != nil {
		return key, nil, false
	}
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write([]byte(identity))
	h.Write([]byte{0})
	h.Write(norm)
	h.Sum(key[:0])
	return key, norm, true
}

// cached is one stored response.
type cached struct {
	key         [32]byte
	contentType string
	provider    string
	body        []byte
	usage       Usage
	expires     time.Time
}

// responseCache is a bounded LRU of responses with a TTL.
type responseCache struct {
	ttl        time.Duration
	maxEntries int
	maxBytes   int64
	maxEntry   int64

	mu    sync.Mutex
	ll    *list.List // front: most recently used
	items map[[32]byte]*list.Element
	bytes int64
}

func newResponseCache(ttl time.Duration, maxEntries int, maxBytes, maxEntry int64) *responseCache {
	return &responseCache{ttl: ttl, maxEntries: maxEntries, maxBytes: maxBytes, maxEntry: maxEntry,
		ll: list.New(), items: map[[32]byte]*list.Element{}}
}

// get returns the live entry for key.
func (c *responseCache) get(key [32]byte, now time.Time) *cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil
	}
	e := el.Value.(*cached)
	if now.After(e.expires) {
		c.remove(el)
		return nil
	}
	c.ll.MoveToFront(el)
	return e
}

// put stores e (its body must not change afterwards), evicting the least recently used.
func (c *responseCache) put(e *cached, now time.Time) {
	size := int64(len(e.body))
	if size > c.maxEntry || size > c.maxBytes {
		return
	}
	e.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		c.remove(el)
	}
	c.items[e.key] = c.ll.PushFront(e)
	c.bytes += size
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
}

func (c *responseCache) remove(el *list.Element) {
	e := c.ll.Remove(el).(*cached)
	delete(c.items, e.key)
	c.bytes -= int64(len(e.body))
}

// len returns the number of entries and their bytes.
func (c *responseCache) len() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len(), c.bytes
}
