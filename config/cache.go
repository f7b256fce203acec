package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cache defaults, documented in docs/configuration.md.
const (
	DefaultCacheMemorySize    = 256 << 20
	DefaultCacheDiskSize      = 1 << 30
	DefaultCacheMaxObjectSize = 64 << 20
	DefaultCacheLockTimeout   = 5 * time.Second
)

// CacheStorage is the top-level cache section: where cached responses are kept. It is fixed
// at start: a reload does not change it (routes' cache settings do change).
type CacheStorage struct {
	// MemorySize is the memory tier's capacity. Zero means 256MiB.
	MemorySize Size `yaml:"memory_size"`
	// MemoryMaxObject is the largest body kept in memory; larger ones are kept on disk only.
	// Zero means memory_size/8.
	MemoryMaxObject Size `yaml:"memory_max_object"`
	// Disk, when set, adds a disk tier that survives restarts.
	Disk *CacheDisk `yaml:"disk"`
}

// CacheDisk configures the disk tier.
type CacheDisk struct {
	// Path is the directory holding the objects. Required.
	Path string `yaml:"path"`
	// Size bounds the bytes on disk; least recently used objects are evicted beyond it.
	// Zero means 1GiB.
	Size Size `yaml:"size"`
}

// RouteCache configures caching on a route (RFC 9111 shared cache).
type RouteCache struct {
	// Enabled turns caching on for the route. Nil means true when the section is present.
	Enabled *bool `yaml:"enabled"`
	// TTL gives the freshness lifetime of responses that state none (no s-maxage, max-age
	// or Expires), by status: keys are status codes or "any". Empty means heuristic freshness
	// only.
	TTL map[string]Duration `yaml:"ttl"`
	// Statuses restricts storing to these status codes. Empty means every status the RFC
	// allows.
	Statuses []int `yaml:"statuses"`
	// MaxObjectSize bounds a stored body; larger responses pass through unstored. Zero means
	// 64MiB.
	MaxObjectSize Size `yaml:"max_object_size"`
	// Key adjusts the cache key (default: method, scheme, host, path and query).
	Key CacheKey `yaml:"key"`
	// Bypass sends matching requests to the origin without caching.
	Bypass CacheBypass `yaml:"bypass"`
	// LockTimeout bounds how long concurrent misses wait for the one request fetching a
	// key. Zero means 5s.
	LockTimeout Duration `yaml:"lock_timeout"`
	// LockDisabled sends concurrent misses to the origin each (no cache lock).
	LockDisabled bool `yaml:"lock_disabled"`
	// UseStale lists the origin failures in which a stale stored response is served instead,
	// like NGINX's proxy_cache_use_stale: error, timeout, invalid_header, http_500, http_502,
	// http_503, http_504, http_403, http_404, http_429. Empty means only what the response's
	// or request's stale-if-error allows (RFC 5861).
	UseStale []string `yaml:"use_stale"`
	// TargetedField names Verge's own targeted cache-control field (RFC 9213), honoured
	// before CDN-Cache-Control and removed from responses. Empty means
	// "Verge-CDN-Cache-Control". Cache-Control itself is refused.
	TargetedField string `yaml:"targeted_field"`
}

// CacheUseStaleConditions are the values routes[].cache.use_stale accepts (the cache
// package's UseStaleConditions).
var CacheUseStaleConditions = []string{"error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403", "http_404", "http_429"}

// CacheKey adjusts the cache key.
type CacheKey struct {
	// IgnoreQuery leaves the query string out of the key.
	IgnoreQuery bool `yaml:"ignore_query"`
	// IncludeQuery keeps only these query parameters. Exclusive with ExcludeQuery.
	IncludeQuery []string `yaml:"include_query"`
	// ExcludeQuery drops these query parameters (e.g. utm_source).
	ExcludeQuery []string `yaml:"exclude_query"`
	// Headers adds these request fields' values to the key, as if every response varied on
	// them.
	Headers []string `yaml:"headers"`
}

// CacheBypass lists what makes a request skip the cache.
type CacheBypass struct {
	// Cookies are cookie names; a request carrying any of them bypasses the cache.
	Cookies []string `yaml:"cookies"`
	// Headers are field names; a request carrying any of them bypasses the cache.
	Headers []string `yaml:"headers"`
}

// On reports whether caching is enabled for the route.
func (r *RouteCache) On() bool { return r != nil && (r.Enabled == nil || *r.Enabled) }

// StatusTTLs returns TTL keyed by status code, with "any" as 0.
func (r *RouteCache) StatusTTLs() map[int]time.Duration {
	if len(r.TTL) == 0 {
		return nil
	}
	out := make(map[int]time.Duration, len(r.TTL))
	for k, d := range r.TTL {
		if k == "any" {
			out[0] = d.Std()
			continue
		}
		n, _ := strconv.Atoi(k) // validated
		out[n] = d.Std()
	}
	return out
}

func (s *CacheStorage) setDefaults() {
	if s.MemorySize == 0 {
		s.MemorySize = DefaultCacheMemorySize
	}
	if s.MemoryMaxObject == 0 {
		s.MemoryMaxObject = s.MemorySize / 8
	}
	if s.Disk != nil && s.Disk.Size == 0 {
		s.Disk.Size = DefaultCacheDiskSize
	}
}

func (r *RouteCache) setDefaults() {
	if r.MaxObjectSize == 0 {
		r.MaxObjectSize = DefaultCacheMaxObjectSize
	}
	r.LockTimeout = orDuration(r.LockTimeout, DefaultCacheLockTimeout)
}

// cache validates the cache sections.
func (v *validator) cache() {
	c := v.c
	if d := c.Cache.Disk; d != nil && d.Path == "" {
		v.errf("cache.disk.path", "path is required")
	}
	for i := range c.Routes {
		rc := c.Routes[i].Cache
		if rc == nil {
			continue
		}
		p := fmt.Sprintf("routes[%d].cache", i)
		if r := &c.Routes[i]; rc.On() && r.Upstream == "" && r.Worker == "" {
			v.errf(p, "caching needs an upstream or worker route")
		} else if rc.On() && r.Worker != "" && r.WorkerOnError == WorkerOnErrorOrigin {
			v.errf(p, "a cached worker route cannot pass failed requests to its upstream (worker_on_error: origin): use cache.use_stale to answer failures with stored responses")
		}
		for k := range rc.TTL {
			if k == "any" {
				continue
			}
			if n, err := strconv.Atoi(k); err != nil || n < 100 || n > 599 {
				v.errf(p+".ttl."+k, "want a status code (100-599) or \"any\", got %q", k)
			}
		}
		for j, s := range rc.Statuses {
			if s < 100 || s > 599 {
				v.errf(fmt.Sprintf("%s.statuses[%d]", p, j), "invalid status %d", s)
			}
		}
		if len(rc.Key.IncludeQuery) > 0 && len(rc.Key.ExcludeQuery) > 0 {
			v.errf(p+".key", "include_query and exclude_query are exclusive")
		}
		for j, h := range append(append([]string{}, rc.Key.Headers...), rc.Bypass.Headers...) {
			if h == "" || strings.ContainsAny(h, " :\t") {
				v.errf(p, "invalid header name %q (entry %d)", h, j)
			}
		}
		for j, u := range rc.UseStale {
			if !slices.Contains(CacheUseStaleConditions, u) {
				v.errf(fmt.Sprintf("%s.use_stale[%d]", p, j), "unknown condition %q (want one of %s)", u, strings.Join(CacheUseStaleConditions, ", "))
			}
		}
		if f := rc.TargetedField; f != "" && !validToken(f) {
			v.errf(p+".targeted_field", "invalid header name %q", f)
		} else if strings.EqualFold(f, "Cache-Control") {
			v.errf(p+".targeted_field", "%s is not a targeted field: Verge would remove it from every response of the route (name a field of its own, such as Verge-CDN-Cache-Control)", f)
		}
		if int64(rc.MaxObjectSize) > int64(c.Cache.MemorySize) && c.Cache.Disk == nil {
			v.errf(p+".max_object_size", "larger than cache.memory_size without a disk tier")
		}
	}
}
