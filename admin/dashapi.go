package admin

import (
	"context"
	"net/http"
)

// CacheStatuser is implemented by Controllers whose server has an HTTP cache. Without it
// GET /cache answers 501.
type CacheStatuser interface {
	// CacheStatus returns the cache's size per tier.
	CacheStatus() CacheStatus
	// CacheTopKeys returns the n cached objects that served the most requests, most first.
	CacheTopKeys(n int) []CacheKey
}

// CacheKey is one object in the answer of GET /cache/keys.
type CacheKey struct {
	URL  string `json:"url"`
	Hits uint64 `json:"hits"`
	// Size is the body's length in bytes, -1 while unknown.
	Size int64 `json:"size"`
}

// Limits of GET /cache/keys.
const (
	defaultTopKeys = 20
	maxTopKeys     = 100
)

type topKeysBody struct {
	Keys []CacheKey `json:"keys"`
}

func (s *Server) cacheKeys(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Controller.(CacheStatuser)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no HTTP cache")
		return
	}
	n, ok := limitParam(w, r, defaultTopKeys, maxTopKeys)
	if !ok {
		return
	}
	keys := c.CacheTopKeys(n)
	if keys == nil {
		keys = []CacheKey{}
	}
	writeJSON(w, http.StatusOK, topKeysBody{keys})
}

// CacheStatus is the answer of GET /cache.
type CacheStatus struct {
	// MemoryBytes and DiskBytes are the bytes each tier holds.
	MemoryBytes int64 `json:"memory_bytes"`
	DiskBytes   int64 `json:"disk_bytes"`
	// MemoryCapacity and DiskCapacity are the configured sizes; DiskCapacity is 0 without
	// a disk tier.
	MemoryCapacity int64 `json:"memory_capacity"`
	DiskCapacity   int64 `json:"disk_capacity"`
}

func (s *Server) cacheStatus(w http.ResponseWriter, _ *http.Request) {
	c, ok := s.Controller.(CacheStatuser)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no HTTP cache")
		return
	}
	writeJSON(w, http.StatusOK, c.CacheStatus())
}

// WorkerRollbacker is implemented by Controllers whose workers can go back to their
// configured module after a deployment through the API. Without it
// POST /workers/{name}/rollback answers 501.
type WorkerRollbacker interface {
	// RollbackWorker deploys worker name's configured module again (on a cluster node: drops
	// the cluster's stored version, so every node does). Unknown worker: an error wrapping
	// ErrNotFound.
	RollbackWorker(ctx context.Context, name string) (WorkerStatus, error)
}

func (s *Server) rollbackWorker(w http.ResponseWriter, r *http.Request) {
	d, ok := s.Controller.(WorkerRollbacker)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server runs no workers")
		return
	}
	name := r.PathValue("name")
	st, err := d.RollbackWorker(r.Context(), name)
	if err != nil {
		writeError(w, deployStatus(err, http.StatusUnprocessableEntity), err.Error())
		return
	}
	s.logger().Info("admin: worker rolled back to its configured module", "remote", r.RemoteAddr, "worker", name, "version", st.Version)
	writeJSON(w, http.StatusOK, st)
}
