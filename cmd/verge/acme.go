package main

import (
	"log/slog"
	"time"

	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/config"
)

// newACME returns the process's ACME manager and what stops it: certificates under the data
// directory (WorkerData/acme) or, in a cluster, in the cluster's JetStream key-value bucket
// (acme.KVBucket), shared with the other nodes. Its renew interval is the smallest of the
// listeners' at start.
func newACME(cfg *config.Config, log *slog.Logger, node *cluster.Node) (*acme.Manager, func()) {
	var every time.Duration
	for i := range cfg.Listeners {
		if t := cfg.Listeners[i].TLS; t != nil && t.ACME != nil {
			if d := t.ACME.RenewInterval.Std(); every == 0 || d < every {
				every = d
			}
		}
	}
	opts := acme.Options{Dir: acme.StorageDir(cfg.WorkerData), RenewInterval: every, Logger: log}
	if node == nil {
		m := acme.New(opts)
		return m, m.Close
	}
	kv := acme.NewKVStorage(node.JetStream(), node.Replicas())
	opts.Storage = kv
	m := acme.New(opts)
	return m, func() { m.Close(); kv.Close() }
}
