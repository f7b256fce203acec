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

func purgeCount(n cache.Purged) admin.PurgeCount {
	return admin.PurgeCount{Objects: n.Objects, Memory: n.Memory, Disk: n.Disk}
}

// PurgeURL deletes the cached objects of an absolute URL.
func (s *serverProc) PurgeURL(url string) (admin.PurgeCount, error) {
	if s.cache == nil {
		return admin.PurgeCount{}, nil
	}
	n, err := s.cache.PurgeURL(url)
	return purgeCount(n), err
}

// PurgePrefix deletes the cached objects under an absolute URL prefix.
func (s *serverProc) PurgePrefix(prefix string) (admin.PurgeCount, error) {
	if s.cache == nil {
		return admin.PurgeCount{}, nil
	}
	n, err := s.cache.PurgePrefix(prefix)
	return purgeCount(n), err
}

// PurgeTag deletes the cached objects with a Cache-Tag or Surrogate-Key.
func (s *serverProc) PurgeTag(tag string) admin.PurgeCount {
	if s.cache == nil {
		return admin.PurgeCount{}
	}
	return purgeCount(s.cache.PurgeTag(tag))
}

// PurgeAll deletes every cached object.
func (s *serverProc) PurgeAll() admin.PurgeCount {
	if s.cache == nil {
		return admin.PurgeCount{}
	}
	return purgeCount(s.cache.PurgeAll())
}
