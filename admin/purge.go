package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Purger is implemented by Controllers whose server has an HTTP cache. Without it the purge
// endpoint answers 501.
type Purger interface {
	// PurgeURL deletes the cached objects of an absolute URL (every variant; the scheme is
	// not compared).
	PurgeURL(url string) (PurgeCount, error)
	// PurgePrefix deletes the cached objects whose URL starts with prefix, an absolute URL.
	PurgePrefix(prefix string) (PurgeCount, error)
	// PurgeTag deletes the cached objects tagged by Cache-Tag or Surrogate-Key.
	PurgeTag(tag string) PurgeCount
	// PurgeAll deletes every cached object.
	PurgeAll() PurgeCount
}

// PurgeCount counts deleted objects: in all, and per cache tier (an object held in memory
// and on disk counts once in Objects and once in each tier).
type PurgeCount struct {
	Objects int `json:"purged"`
	Memory  int `json:"memory"`
	Disk    int `json:"disk"`
}

func (c *PurgeCount) add(d PurgeCount) {
	c.Objects += d.Objects
	c.Memory += d.Memory
	c.Disk += d.Disk
}

// PurgeRequest is the body of POST /cache/purge: any mix of URLs, prefixes and tags, or all,
// at least one.
type PurgeRequest struct {
	// URLs are absolute URLs, e.g. "https://example.com/a.css?v=2".
	URLs []string `json:"urls"`
	// Prefixes are absolute URL prefixes, e.g. "https://example.com/images/".
	Prefixes []string `json:"prefixes"`
	// Tags are Cache-Tag / Surrogate-Key values.
	Tags []string `json:"tags"`
	// All deletes every cached object.
	All bool `json:"all"`
}

// ClusterPurger is implemented by Controllers of a cluster node: after a purge is applied
// on this node, PublishPurge sends it to the other nodes.
type ClusterPurger interface {
	// PublishPurge sends req, already applied on this node (local is its count), to every
	// node of the cluster and waits a bounded time for their confirmations. It returns an
	// error wrapping ErrNoCluster when this node is not in a cluster (the purge is then a
	// single node's, as without this interface). Any other error means the purge reached
	// this node only; the result still says what is known.
	PublishPurge(ctx context.Context, req PurgeRequest, local PurgeCount) (ClusterPurgeResult, error)
}

// ErrNoCluster is returned (possibly wrapped) by ClusterPurger and ClusterStatuser methods
// of a node that is not part of a cluster.
var ErrNoCluster = errors.New("this node is not part of a cluster (its configuration has no cluster section)")

// ClusterPurgeResult is what a purge did across a cluster.
type ClusterPurgeResult struct {
	// Node is this node's name.
	Node string
	// Sequence is the purge's position in the cluster's purge stream (0: not stored).
	Sequence uint64
	// Nodes are the confirmations received within the wait, this node's included.
	Nodes []NodePurge
	// Members are the nodes known to be in the cluster.
	Members []string
	// Missing are the members that did not confirm in time; they apply the purge when they
	// read it (a node that is down does when it is back).
	Missing []string
}

// NodePurge is one node's count in a cluster purge.
type NodePurge struct {
	Node string `json:"node"`
	PurgeCount
	// Error says why the node could not apply the purge.
	Error string `json:"error,omitempty"`
}

// PurgeResult is the answer of POST /cache/purge: {"purged":N,"memory":M,"disk":D} on a
// single node. PurgeCount is always this node's count; on a cluster node the other fields say
// how far the purge got.
type PurgeResult struct {
	PurgeCount
	// Node is this node's name (cluster only).
	Node string `json:"node,omitempty"`
	// Nodes counts the nodes that applied the purge within the wait, this one included
	// (cluster only).
	Nodes int `json:"nodes,omitempty"`
	// Members counts the nodes known to be in the cluster (cluster only).
	Members int `json:"members,omitempty"`
	// Sequence is the purge's position in the cluster's purge stream (cluster only).
	Sequence uint64 `json:"sequence,omitempty"`
	// PerNode lists each confirming node's count, sorted by name (cluster only).
	PerNode []NodePurge `json:"per_node,omitempty"`
	// Missing names the members that did not confirm in time (cluster only).
	Missing []string `json:"missing,omitempty"`
	// Error says why the purge did not reach the rest of the cluster (with status 503).
	Error string `json:"error,omitempty"`
}

// maxPurgeBody bounds a purge request body.
const maxPurgeBody = 1 << 20

// purge deletes cached objects by URL, prefix or tag, or all of them. The request is checked
// whole before anything is deleted: a relative URL or prefix ("/c/1") is a 400.
func (s *Server) purge(w http.ResponseWriter, r *http.Request) {
	p, ok := s.Controller.(Purger)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this server has no cache")
		return
	}
	var req PurgeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "purge request larger than 1MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid purge request: "+err.Error())
		return
	}
	if len(req.URLs)+len(req.Prefixes)+len(req.Tags) == 0 && !req.All {
		writeError(w, http.StatusBadRequest, "nothing to purge: give urls, prefixes, tags or all")
		return
	}
	for _, list := range [2][]string{req.URLs, req.Prefixes} {
		for _, u := range list {
			if !absoluteHTTPURL(u) {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("purge URL %q is not absolute: give scheme and host, e.g. https://example.com/path", u))
				return
			}
		}
	}
	var n PurgeCount
	if req.All {
		n = p.PurgeAll()
	}
	for _, u := range req.URLs {
		c, err := p.PurgeURL(u)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		n.add(c)
	}
	for _, pre := range req.Prefixes {
		c, err := p.PurgePrefix(pre)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		n.add(c)
	}
	for _, t := range req.Tags {
		n.add(p.PurgeTag(t))
	}
	s.logger().Info("admin: cache purged", "remote", r.RemoteAddr, "all", req.All, "urls", len(req.URLs),
		"prefixes", len(req.Prefixes), "tags", len(req.Tags), "objects", n.Objects, "memory", n.Memory, "disk", n.Disk)
	res := PurgeResult{PurgeCount: n}
	cp, ok := s.Controller.(ClusterPurger)
	if !ok {
		writeJSON(w, http.StatusOK, res)
		return
	}
	cr, err := cp.PublishPurge(r.Context(), req, n)
	if errors.Is(err, ErrNoCluster) {
		writeJSON(w, http.StatusOK, res)
		return
	}
	res.Node, res.Sequence, res.PerNode, res.Missing = cr.Node, cr.Sequence, cr.Nodes, cr.Missing
	res.Members = len(cr.Members)
	for _, c := range cr.Nodes {
		if c.Error == "" {
			res.Nodes++
		}
	}
	if err != nil {
		// Applied here, unknown elsewhere: the operator must retry (purges are idempotent).
		res.Error = "purged on this node only: " + err.Error()
		s.logger().Warn("admin: cache purge did not reach the cluster", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, res)
		return
	}
	if len(cr.Missing) > 0 {
		s.logger().Info("admin: cache purge not confirmed by every node yet", "missing", cr.Missing, "sequence", cr.Sequence)
	}
	writeJSON(w, http.StatusOK, res)
}

// absoluteHTTPURL reports whether u is an http or https URL with a host.
func absoluteHTTPURL(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != ""
}
