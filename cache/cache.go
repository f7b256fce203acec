// Package cache is Verge's shared HTTP cache (RFC 9111, with stale-while-revalidate and
// stale-if-error from RFC 5861 and the Cache-Status header of RFC 9211). It implements
// proxy.Cache: set Proxy.Cache to a *Cache and the engine looks requests up after the Request
// phase and stores origin responses after UpstreamResponse.
//
// Objects live in an in-memory tier (S3-FIFO eviction, weighted by size) and optionally in a
// disk tier that survives restarts. Concurrent misses for one key are collapsed: one request
// goes to the origin, the others wait for it and stream its response as it arrives. Objects
// are purged by URL, URL prefix or tag (Cache-Tag and Surrogate-Key response fields).
//
// docs/caching.md describes the behaviour in full.
package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// Defaults of Options.
const (
	// DefaultMemorySize is the memory tier's capacity when Options.MemorySize is zero.
	DefaultMemorySize = 256 << 20
	// DefaultDiskSize is the disk tier's capacity when Options.DiskSize is zero.
	DefaultDiskSize = 1 << 30
	// DefaultName names the cache in Cache-Status fields when Options.Name is empty.
	DefaultName = "verge"
)

// Options configure a Cache.
type Options struct {
	// MemorySize is the memory tier's capacity in bytes (bodies plus an estimate of the
	// heads). Zero means DefaultMemorySize.
	MemorySize int64
	// MemoryMaxObject is the largest body kept in memory; larger objects are kept on disk
	// only (or not at all without a disk tier). Zero means MemorySize/8.
	MemoryMaxObject int64
	// Dir, when set, enables the disk tier in this directory. Objects found there at start
	// are served again.
	Dir string
	// DiskSize bounds the disk tier in bytes. Zero means DefaultDiskSize.
	DiskSize int64
	// Policy applies to requests whose CacheControl.Policy is nil. Nil means the zero
	// Policy.
	Policy *Policy
	// Name is this cache's name in Cache-Status fields. Empty means DefaultName.
	Name string
	// Metrics receives observations. Nil means none.
	Metrics Metrics
	// Logger receives disk tier errors. Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Metrics receives the cache's observations. *observe.Metrics implements it. Methods are
// called concurrently and on the request path: they must not block.
type Metrics interface {
	// CacheResult counts one request by outcome: "hit", "stale" (served stale), "collapsed"
	// (served from another request's fetch), "miss", "revalidated" (a 304 refreshed a stored
	// response), "bypass".
	CacheResult(result string)
	// CacheLockWait counts a request that waited for another one fetching its key; timedOut
	// is true when it gave up waiting and went to the origin.
	CacheLockWait(timedOut bool)
	// CacheBytes counts body bytes served from the cache (served) or stored (stored).
	CacheBytes(kind string, n int64)
	// CacheEviction counts an object evicted for space from the "memory" or "disk" tier.
	CacheEviction(tier string)
}

type nopMetrics struct{}

func (nopMetrics) CacheResult(string)       {}
func (nopMetrics) CacheLockWait(bool)       {}
func (nopMetrics) CacheBytes(string, int64) {}
func (nopMetrics) CacheEviction(string)     {}

// Cache is a shared HTTP cache. It is safe for concurrent use.
type Cache struct {
	opts    Options
	policy  *Policy
	name    string
	metrics Metrics
	log     *slog.Logger
	now     func() time.Time
	memMax  int64

	mem  *otter.Cache[uint64, *object]
	disk *diskTier // nil without a disk tier

	flightMu sync.Mutex
	flights  map[uint64]*flight

	idx index

	txPool sync.Pool
}

var _ proxy.Cache = (*Cache)(nil)

// flight is a fetch in progress for one key: the cache lock. Other requests for the key wait
// on ready; obj, when set, is the response being stored, which they stream as it grows.
type flight struct {
	ready chan struct{}
	obj   *object
	done  bool // ready closed
}

// New builds a cache. With a disk tier, the objects already in Dir are indexed.
func New(o Options) (*Cache, error) {
	if o.MemorySize == 0 {
		o.MemorySize = DefaultMemorySize
	}
	if o.MemorySize < 0 {
		return nil, errors.New("cache: negative memory size")
	}
	if o.DiskSize == 0 {
		o.DiskSize = DefaultDiskSize
	}
	c := &Cache{
		opts:    o,
		policy:  o.Policy,
		name:    o.Name,
		metrics: o.Metrics,
		log:     o.Logger,
		now:     o.Now,
		memMax:  o.MemoryMaxObject,
		flights: map[uint64]*flight{},
	}
	if c.policy == nil {
		c.policy = defaultPolicy
	}
	if c.name == "" {
		c.name = DefaultName
	}
	if c.metrics == nil {
		c.metrics = nopMetrics{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.memMax <= 0 {
		c.memMax = o.MemorySize / 8
	}
	c.idx.init()
	var err error
	c.mem, err = otter.New(&otter.Options[uint64, *object]{
		MaximumWeight: uint64(o.MemorySize),
		Weigher:       func(_ uint64, v *object) uint32 { return v.weight() },
		OnDeletion: func(e otter.DeletionEvent[uint64, *object]) {
			if !e.WasEvicted() {
				return
			}
			c.metrics.CacheEviction("memory")
			c.forgetIfGone(e.Key)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: memory tier: %w", err)
	}
	if o.Dir != "" {
		d, metas, err := openDisk(o.Dir, o.DiskSize)
		if err != nil {
			return nil, err
		}
		d.onEvict = func(e *diskEntry) {
			c.metrics.CacheEviction("disk")
			c.forgetIfGone(e.hash)
		}
		c.disk = d
		for _, m := range metas {
			c.idx.add(m)
		}
	}
	c.txPool.New = func() any { return &tx{c: c} }
	return c, nil
}

// Close stops the memory tier's background work. The cache must not be used afterwards.
func (c *Cache) Close() error {
	c.mem.StopAllGoroutines()
	return nil
}

// Usage reports the bytes held by the memory and disk tiers.
func (c *Cache) Usage() (memory, disk int64) {
	memory = int64(c.mem.WeightedSize())
	if c.disk != nil {
		disk = c.disk.usage()
	}
	return memory, disk
}

// forgetIfGone drops a key from the index once no tier holds it.
func (c *Cache) forgetIfGone(hash uint64) {
	if _, ok := c.mem.GetIfPresent(hash); ok {
		return
	}
	if c.disk != nil && c.disk.has(hash) {
		return
	}
	c.idx.remove(hash)
}

// get returns the stored object for hash whose key is key, from memory or disk.
func (c *Cache) get(hash uint64, key []byte) *object {
	if o, ok := c.mem.GetIfPresent(hash); ok {
		if o.m.Key == string(key) {
			return o
		}
		return nil
	}
	if c.disk == nil {
		return nil
	}
	m, b, err := c.disk.load(hash)
	if err != nil {
		c.log.Warn("cache: reading disk object", "err", err)
		return nil
	}
	if m == nil || m.Key != string(key) {
		return nil
	}
	if b.size <= c.memMax {
		// Promote small objects to memory.
		r := bodyReader{}
		r.init(nil, b, 0, -1)
		data := make([]byte, b.size)
		n, err := readFull(&r, data)
		r.Close()
		if err == nil && int64(n) == b.size {
			o := newObject(m, completeBody(data))
			c.mem.Set(hash, o)
			return o
		}
		if err != nil {
			// A corrupt file has been deleted: a miss.
			c.log.Warn("cache: reading disk object", "err", err)
			return nil
		}
	}
	return newObject(m, b)
}

func readFull(r *bodyReader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// acquire returns the flight for hash and whether the caller created it (and so must fetch).
func (c *Cache) acquire(hash uint64) (*flight, bool) {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if f := c.flights[hash]; f != nil {
		return f, false
	}
	f := &flight{ready: make(chan struct{})}
	c.flights[hash] = f
	return f, true
}

// publish makes obj the flight's object (nil: nothing to share) and wakes the waiters. With
// a nil obj, or a complete one, the flight ends.
func (c *Cache) publish(hash uint64, f *flight, obj *object, end bool) {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if !f.done {
		f.obj = obj
		f.done = true
		close(f.ready)
	}
	if end && c.flights[hash] == f {
		delete(c.flights, hash)
	}
}

// inflight returns the flight for hash, if any.
func (c *Cache) inflight(hash uint64) *flight {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	return c.flights[hash]
}

// insert stores a complete object in the tiers and the index.
func (c *Cache) insert(o *object) {
	c.idx.add(o.m)
	if n, _ := o.b.state(); n <= c.memMax && o.b.data != nil {
		c.mem.Set(o.m.Hash, o)
	} else {
		c.mem.Invalidate(o.m.Hash)
	}
}

// removeHash deletes one object from every tier and the index, reporting which tiers held
// it.
func (c *Cache) removeHash(hash uint64) (inMem, onDisk bool) {
	_, inMem = c.mem.Invalidate(hash)
	onDisk = c.disk != nil && c.disk.remove(hash)
	c.idx.remove(hash)
	return inMem, onDisk
}

// invalidatePrimary deletes every variant stored under a primary key.
func (c *Cache) invalidatePrimary(primary uint64) {
	for _, h := range c.idx.variantsOf(primary) {
		c.removeHash(h)
	}
}

// Purged counts the objects a purge deleted: in all, and per tier (an object held by both
// tiers counts once in Objects and once in each tier).
type Purged struct {
	Objects, Memory, Disk int
}

// ErrRelativeURL is returned by PurgeURL and PurgePrefix for a URL without scheme and host.
var ErrRelativeURL = errors.New("cache: purge needs an absolute URL (http://host/path or https://host/path)")

// PurgeURL deletes the objects stored for an absolute URL ("https://host/path?query"), every
// variant. The scheme is not compared, the host is compared case-insensitively. A relative
// URL ("/path") is an error: it matches no object.
func (c *Cache) PurgeURL(url string) (Purged, error) {
	if !absoluteURL(url) {
		return Purged{}, ErrRelativeURL
	}
	want := urlRest(url)
	return c.purge(func(m *entry) bool { return urlRest(m.url) == want }), nil
}

// PurgePrefix deletes the objects whose URL starts with prefix, an absolute URL (scheme
// ignored as for PurgeURL), e.g. "https://example.com/images/".
func (c *Cache) PurgePrefix(prefix string) (Purged, error) {
	if !absoluteURL(prefix) {
		return Purged{}, ErrRelativeURL
	}
	want := urlRest(prefix)
	return c.purge(func(m *entry) bool { return strings.HasPrefix(urlRest(m.url), want) }), nil
}

// PurgeTag deletes the objects tagged tag by their Cache-Tag or Surrogate-Key fields.
func (c *Cache) PurgeTag(tag string) Purged {
	return c.purge(func(m *entry) bool {
		for _, t := range m.tags {
			if t == tag {
				return true
			}
		}
		return false
	})
}

// PurgeAll deletes every object.
func (c *Cache) PurgeAll() Purged { return c.purge(func(*entry) bool { return true }) }

func (c *Cache) purge(match func(*entry) bool) Purged {
	var n Purged
	for _, h := range c.idx.matching(match) {
		inMem, onDisk := c.removeHash(h)
		if inMem || onDisk {
			n.Objects++
		}
		if inMem {
			n.Memory++
		}
		if onDisk {
			n.Disk++
		}
	}
	return n
}

// absoluteURL reports whether u is "http://host..." or "https://host..." with a host.
func absoluteURL(u string) bool {
	var rest string
	switch {
	case len(u) >= 7 && strings.EqualFold(u[:7], "http://"):
		rest = u[7:]
	case len(u) >= 8 && strings.EqualFold(u[:8], "https://"):
		rest = u[8:]
	default:
		return false
	}
	return rest != "" && rest[0] != '/'
}

// urlRest lowercases a URL's host and drops its scheme.
func urlRest(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	host, path := u, ""
	if i := strings.IndexByte(u, '/'); i >= 0 {
		host, path = u[:i], u[i:]
	}
	if path == "" {
		path = "/"
	}
	return strings.ToLower(host) + path
}

// index knows every stored object's URL, tags and variants, for Vary lookups and purges.
type index struct {
	mu       sync.RWMutex
	vary     map[uint64][]string            // primary -> Vary of its latest response
	variants map[uint64]map[uint64]struct{} // primary -> variant hashes
	entries  map[uint64]*entry              // variant hash -> entry
}

type entry struct {
	primary uint64
	url     string
	tags    []string
	ns      string // the Cache API namespace, "" for the proxy's entries
}

func (x *index) init() {
	x.vary = map[uint64][]string{}
	x.variants = map[uint64]map[uint64]struct{}{}
	x.entries = map[uint64]*entry{}
}

func (x *index) add(m *meta) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.vary[m.Primary] = m.Vary
	vs := x.variants[m.Primary]
	if vs == nil {
		vs = map[uint64]struct{}{}
		x.variants[m.Primary] = vs
	}
	vs[m.Hash] = struct{}{}
	x.entries[m.Hash] = &entry{primary: m.Primary, url: m.URL, tags: m.Tags, ns: apiNamespace(m.Key)}
}

func (x *index) remove(hash uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.entries[hash]
	if e == nil {
		return
	}
	delete(x.entries, hash)
	if vs := x.variants[e.primary]; vs != nil {
		delete(vs, hash)
		if len(vs) == 0 {
			delete(x.variants, e.primary)
			delete(x.vary, e.primary)
		}
	}
}

// varyOf returns the Vary field names of the latest response stored under primary and
// whether any response is stored under it.
func (x *index) varyOf(primary uint64) ([]string, bool) {
	x.mu.RLock()
	v, ok := x.vary[primary]
	x.mu.RUnlock()
	return v, ok
}

func (x *index) variantsOf(primary uint64) []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]uint64, 0, len(x.variants[primary]))
	for h := range x.variants[primary] {
		out = append(out, h)
	}
	return out
}

func (x *index) matching(match func(*entry) bool) []uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []uint64
	for h, e := range x.entries {
		if match(e) {
			out = append(out, h)
		}
	}
	return out
}

// tagsOf collects the tags of a response: Cache-Tag and Surrogate-Key fields, comma- or
// space-separated.
func tagsOf(h *message.Header) []string {
	var tags []string
	add := func(v string) bool {
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			tags = append(tags, t)
		}
		return true
	}
	h.Values("Cache-Tag", add)
	h.Values("Surrogate-Key", add)
	return tags
}
