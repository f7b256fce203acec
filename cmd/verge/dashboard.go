package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/router"
)

// The dashboard's parts of the admin API: the timeline of the charts, the KV browser, the
// cache's sizes, validation without applying, and worker rollbacks.
var (
	_ admin.KVBrowser        = (*serverProc)(nil)
	_ admin.CacheStatuser    = (*serverProc)(nil)
	_ admin.ConfigValidator  = (*serverProc)(nil)
	_ admin.WorkerRollbacker = (*serverProc)(nil)
)

// dashboardOn reports whether the admin listener serves the dashboard (admin.dashboard,
// default true).
func dashboardOn(cfg *config.Config) bool {
	return cfg.Admin.Dashboard == nil || *cfg.Admin.Dashboard
}

// timeline adapts an observe.Timeline to admin.Timeline.
type timeline struct{ t *observe.Timeline }

func (t timeline) Points(after uint64) (any, uint64) { return t.t.Since(after) }
func (t timeline) Changed() <-chan struct{}          { return t.t.Changed() }
func (t timeline) Interval() time.Duration           { return t.t.Interval() }

// startTimeline samples the metrics for the dashboard's charts until the returned function
// is called.
func (s *serverProc) startTimeline() (stop func()) {
	s.timeline = s.metrics.NewTimeline(0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.timeline.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// ValidateConfig checks yaml as LoadConfig would, without applying it.
func (s *serverProc) ValidateConfig(yaml []byte) error {
	name := s.file
	if name == "" {
		name = "admin"
	}
	cfg, err := config.Parse(name, yaml)
	if err != nil {
		return err
	}
	return checkAdminExposure(cfg)
}

// CacheStatus reports the HTTP cache's sizes.
func (s *serverProc) CacheStatus() admin.CacheStatus {
	var st admin.CacheStatus
	if s.cache != nil {
		st.MemoryBytes, st.DiskBytes = s.cache.Usage()
	}
	if in := s.rt.Current(); in != nil {
		c := in.Config.Cache
		st.MemoryCapacity = int64(c.MemorySize)
		if c.Disk != nil {
			st.DiskCapacity = int64(c.Disk.Size)
		}
	}
	return st
}

// CacheTopKeys lists the cached objects that served the most requests.
func (s *serverProc) CacheTopKeys(n int) []admin.CacheKey {
	if s.cache == nil {
		return nil
	}
	var out []admin.CacheKey
	for _, k := range s.cache.TopKeys(n) {
		out = append(out, admin.CacheKey{URL: k.URL, Hits: k.Hits, Size: k.Size})
	}
	return out
}

// RollbackWorker goes back to worker name's configured module: on a cluster node it drops
// the stored version (every node follows), otherwise it deploys the configured module.
func (s *serverProc) RollbackWorker(ctx context.Context, name string) (admin.WorkerStatus, error) {
	if s.deploys != nil {
		if _, err := s.DropDeployment(ctx, name); err != nil && !errors.Is(err, admin.ErrNotFound) {
			return admin.WorkerStatus{}, err
		}
	} else {
		s.mu.Lock()
		w, err := s.configuredWorker(name)
		if err != nil {
			s.mu.Unlock()
			return admin.WorkerStatus{}, err
		}
		wc, err := router.WorkerConfig(ctx, w)
		if err == nil {
			_, err = s.workers.reg.Deploy(ctx, wc)
		}
		s.mu.Unlock()
		if err != nil {
			return admin.WorkerStatus{}, err
		}
	}
	for _, st := range s.Workers() {
		if st.Name == name {
			return st, nil
		}
	}
	return admin.WorkerStatus{}, fmt.Errorf("worker %q: %w", name, admin.ErrNotFound)
}

// KVNamespaces lists the KV namespaces the workers of the configuration in effect bind.
func (s *serverProc) KVNamespaces() []string {
	var out []string
	if in := s.rt.Current(); in != nil {
		for _, w := range in.Config.Workers {
			for _, b := range w.KV {
				if !slices.Contains(out, b.Namespace) {
					out = append(out, b.Namespace)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// kvNamespace opens a namespace the configuration binds; any other name is not found, so
// the API cannot create namespaces.
func (s *serverProc) kvNamespace(ctx context.Context, ns string) (kv.Namespace, error) {
	if !slices.Contains(s.KVNamespaces(), ns) {
		return nil, fmt.Errorf("KV namespace %q is not bound by any worker: %w", ns, admin.ErrNotFound)
	}
	return s.workers.kv.Namespace(ctx, ns)
}

// kvErr marks the KV package's argument errors for a 400.
func kvErr(err error) error {
	if errors.Is(err, kv.ErrInvalid) {
		return fmt.Errorf("%w: %w", admin.ErrInvalid, err)
	}
	return err
}

// KVList returns a page of a namespace's keys.
func (s *serverProc) KVList(ctx context.Context, ns string, o admin.KVListOptions) (admin.KVPage, error) {
	n, err := s.kvNamespace(ctx, ns)
	if err != nil {
		return admin.KVPage{}, err
	}
	res, err := n.List(ctx, kv.ListOptions{Prefix: o.Prefix, Cursor: o.Cursor, Limit: o.Limit})
	if err != nil {
		return admin.KVPage{}, kvErr(err)
	}
	page := admin.KVPage{Complete: res.ListComplete, Cursor: res.Cursor, Keys: make([]admin.KVKey, 0, len(res.Keys))}
	for _, k := range res.Keys {
		kk := admin.KVKey{Name: k.Name}
		if !k.Expiration.IsZero() {
			exp := k.Expiration
			kk.Expiration = &exp
		}
		if k.Metadata != nil && json.Valid(k.Metadata) {
			kk.Metadata = k.Metadata
		}
		page.Keys = append(page.Keys, kk)
	}
	return page, nil
}

// KVGet reads a value.
func (s *serverProc) KVGet(ctx context.Context, ns, key string) (admin.KVEntry, error) {
	n, err := s.kvNamespace(ctx, ns)
	if err != nil {
		return admin.KVEntry{}, err
	}
	e, err := n.Get(ctx, key)
	if err != nil {
		return admin.KVEntry{}, kvErr(err)
	}
	if e == nil {
		return admin.KVEntry{}, fmt.Errorf("key %q in %s: %w", key, ns, admin.ErrNotFound)
	}
	return admin.NewKVEntry(key, e.Value, e.Metadata, e.Expiration), nil
}

// KVPut stores a value.
func (s *serverProc) KVPut(ctx context.Context, ns, key string, value []byte, metadata json.RawMessage, ttl time.Duration) error {
	n, err := s.kvNamespace(ctx, ns)
	if err != nil {
		return err
	}
	return kvErr(n.Put(ctx, key, value, kv.PutOptions{Metadata: metadata, ExpirationTTL: ttl}))
}

// KVDelete removes a key.
func (s *serverProc) KVDelete(ctx context.Context, ns, key string) error {
	n, err := s.kvNamespace(ctx, ns)
	if err != nil {
		return err
	}
	return kvErr(n.Delete(ctx, key))
}
