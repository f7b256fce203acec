package main

import (
	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/observe"
)

var _ admin.Purger = (*serverProc)(nil)

// newCache builds the process's HTTP cache from the top-level cache section. It lives for the
// whole process: reloads change which routes cache, not the storage.
func newCache(cfg *config.Config, m *observe.Metrics) (*cache.Cache, error) {
	o := cache.Options{
		MemorySize:      int64(cfg.Cache.MemorySize),
		MemoryMaxObject: int64(cfg.Cache.MemoryMaxObject),
		Metrics:         m,
	}
	if d := cfg.Cache.Disk; d != nil {
		o.Dir, o.DiskSize = d.Path, int64(d.Size)
	}
	c, err := cache.New(o)
	if err != nil {
		return nil, err
	}
	m.SetCacheUsage(c.Usage)
	return c, nil
}

// PurgeURL deletes the cached objects of a URL.
func (s *serverProc) PurgeURL(url string) int {
	if s.cache == nil {
		return 0
	}
	return s.cache.PurgeURL(url)
}

// PurgePrefix deletes the cached objects under a URL prefix.
func (s *serverProc) PurgePrefix(prefix string) int {
	if s.cache == nil {
		return 0
	}
	return s.cache.PurgePrefix(prefix)
}

// PurgeTag deletes the cached objects with a Cache-Tag or Surrogate-Key.
func (s *serverProc) PurgeTag(tag string) int {
	if s.cache == nil {
		return 0
	}
	return s.cache.PurgeTag(tag)
}
