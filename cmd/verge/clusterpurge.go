package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cache"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/cluster/purge"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/durable/clustered"
)

var (
	_ admin.ClusterPurger   = (*serverProc)(nil)
	_ admin.ClusterStatuser = (*serverProc)(nil)
)

// purgeStateFileName is the file in the disk cache's directory that records the last cluster
// purge applied to it: the disk tier survives restarts, so a restarted node applies the purges
// published after that one.
const purgeStateFileName = "cluster-purges.seq"

// clusterStatusWait bounds how long GET /cluster waits for the members' answers.
const clusterStatusWait = time.Second

// purgeStateFile returns where the cluster purge position is kept: "" for a memory-only cache,
// which starts empty anyway.
func purgeStateFile(cfg *config.Config) string {
	if d := cfg.Cache.Disk; d != nil {
		return filepath.Join(d.Path, purgeStateFileName)
	}
	return ""
}

// startPurges connects the cache to the cluster's purges; s.cluster is set.
func (s *serverProc) startPurges(stateFile string) (*purge.Bus, error) {
	b, err := purge.Start(purge.Options{Node: s.cluster, Apply: s.applyClusterPurge, StateFile: stateFile, Logger: s.log,
		AckWait: s.purgeAckWait})
	if err != nil {
		return nil, err
	}
	if err := s.metrics.Register(b.Collector()); err != nil {
		b.Close()
		return nil, fmt.Errorf("cluster purge metrics: %w", err)
	}
	return b, nil
}

// purgeCatchUpWait bounds how long a starting node waits, before it serves, to apply the
// purges it missed while it was away.
const purgeCatchUpWait = 10 * time.Second

// waitPurgeCatchUp delays serving until the purges published while this node was away are
// applied to its disk cache, or purgeCatchUpWait has passed (the cluster is unreachable:
// serve anyway, as a node that cannot reach the cluster does).
func (s *serverProc) waitPurgeCatchUp() {
	t := time.NewTimer(purgeCatchUpWait)
	defer t.Stop()
	select {
	case <-s.purges.CaughtUp():
	case <-t.C:
		s.log.Warn("cluster purges: could not read the purges published while this node was away; serving anyway, and applying them once the cluster is reachable",
			"waited", purgeCatchUpWait)
	}
}

// applyClusterPurge applies a purge another node published.
func (s *serverProc) applyClusterPurge(r purge.Request) (purge.Count, error) {
	n, err := s.purgeLocal(admin.PurgeRequest{URLs: r.URLs, Prefixes: r.Prefixes, Tags: r.Tags, All: r.All})
	return purge.Count{Objects: n.Objects, Memory: n.Memory, Disk: n.Disk}, err
}

// purgeLocal applies a whole purge request to this node's cache; on an error (a relative
// URL, which the issuing node refuses before publishing) the rest is still applied.
func (s *serverProc) purgeLocal(r admin.PurgeRequest) (cache.Purged, error) {
	var n cache.Purged
	if s.cache == nil {
		return n, nil
	}
	add := func(d cache.Purged) {
		n.Objects += d.Objects
		n.Memory += d.Memory
		n.Disk += d.Disk
	}
	var firstErr error
	if r.All {
		add(s.cache.PurgeAll())
	}
	for _, u := range r.URLs {
		d, err := s.cache.PurgeURL(u)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("url %q: %w", u, err)
		}
		add(d)
	}
	for _, p := range r.Prefixes {
		d, err := s.cache.PurgePrefix(p)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("prefix %q: %w", p, err)
		}
		add(d)
	}
	for _, t := range r.Tags {
		add(s.cache.PurgeTag(t))
	}
	return n, firstErr
}

// PublishPurge sends a purge applied on this node to the other nodes.
func (s *serverProc) PublishPurge(ctx context.Context, req admin.PurgeRequest, local admin.PurgeCount) (admin.ClusterPurgeResult, error) {
	if s.purges == nil {
		return admin.ClusterPurgeResult{}, admin.ErrNoCluster
	}
	res, err := s.purges.Publish(ctx, purge.Request{URLs: req.URLs, Prefixes: req.Prefixes, Tags: req.Tags, All: req.All},
		purge.Count{Objects: local.Objects, Memory: local.Memory, Disk: local.Disk})
	out := admin.ClusterPurgeResult{Node: s.cluster.Name(), Sequence: res.Sequence, Members: res.Members, Missing: res.Missing}
	for _, n := range res.Nodes {
		out.Nodes = append(out.Nodes, admin.NodePurge{Node: n.Node, Error: n.Error,
			PurgeCount: admin.PurgeCount{Objects: n.Objects, Memory: n.Memory, Disk: n.Disk}})
	}
	return out, err
}

// clusterStatus is GET /cluster: the cluster's state and this node's purge position.
type clusterStatus struct {
	cluster.Status
	Purges *purgeStatus `json:"purges,omitempty"`
	// Durable is this node's side of the Durable Objects: leases, forwarding, replication.
	Durable *clustered.Status `json:"durable_objects,omitempty"`
}

// purgeStatus is this node's side of the cluster purges.
type purgeStatus struct {
	// AppliedSequence is the stream sequence of the last purge applied here.
	AppliedSequence uint64 `json:"applied_sequence"`
	Sent            uint64 `json:"sent"`
	Received        uint64 `json:"received"`
	Applied         uint64 `json:"applied"`
	PublishFailures uint64 `json:"publish_failures"`
	ApplyFailures   uint64 `json:"apply_failures"`
	Resyncs         uint64 `json:"resyncs"`
}

// ClusterStatus reports the cluster as this node sees it.
func (s *serverProc) ClusterStatus(ctx context.Context) (any, error) {
	if s.cluster == nil {
		return nil, admin.ErrNoCluster
	}
	st := clusterStatus{Status: s.cluster.Status(ctx, clusterStatusWait)}
	if b := s.purges; b != nil {
		seq, _ := b.Applied()
		x := b.Stats()
		st.Purges = &purgeStatus{AppliedSequence: seq, Sent: x.Sent, Received: x.Received, Applied: x.Applied,
			PublishFailures: x.PublishFailures, ApplyFailures: x.ApplyFailures, Resyncs: x.Resyncs}
	}
	if w := s.workers; w != nil && w.dc != nil {
		d := w.dc.Status()
		st.Durable = &d
	}
	return st, nil
}
