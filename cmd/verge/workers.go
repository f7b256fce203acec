package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/worker"
)

// workerStopTimeout bounds closing the workers (in-flight requests, Durable Object commits).
const workerStopTimeout = 10 * time.Second

// workerStack is the worker registry with the embedded storage under one data directory:
// <data>/kv (KV namespaces), <data>/do (Durable Objects), <data>/cache (compiled code). In a
// cluster, KV namespaces are JetStream buckets instead.
type workerStack struct {
	reg *worker.Registry
	kv  kv.Store
	do  *durable.SQLiteStore
}

// Subrequests go through the registry's own transport (its dialer enforces each worker's
// fetch policy), not the proxy's; listeners tells the policy which addresses are Verge's own.
// memoryLimit caps the linear memory of all instances together (0: the default). kvs is
// the KV store; nil means SQLite files under dataDir.
func newWorkerStack(dataDir string, memoryLimit int64, listeners func() []worker.Listener, log *slog.Logger, kvs kv.Store) (*workerStack, error) {
	if kvs == nil {
		s, err := kv.OpenSQLite(filepath.Join(dataDir, "kv"))
		if err != nil {
			return nil, err
		}
		kvs = s
	}
	dos := durable.OpenSQLite(filepath.Join(dataDir, "do"))
	reg := worker.NewRegistry(worker.Services{
		CacheDir:    filepath.Join(dataDir, "cache"),
		KV:          kvs,
		Durable:     dos,
		Listeners:   listeners,
		Logger:      log,
		MemoryLimit: memoryLimit,
	})
	return &workerStack{reg: reg, kv: kvs, do: dos}, nil
}

func (w *workerStack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), workerStopTimeout)
	defer cancel()
	w.reg.Close(ctx)
	w.do.Close()
	w.kv.Close()
}

// clusterKV returns the KV store of a cluster node: JetStream buckets, read through this
// node's cache; nil without a cluster (SQLite files then).
func clusterKV(node *cluster.Node, c *config.Cluster, log *slog.Logger) kv.Store {
	if node == nil {
		return nil
	}
	return kv.NewJetStreamStore(node, kv.JetStreamOptions{
		CacheTTL:  c.KVCacheTTL.Std(),
		CacheSize: int64(c.KVCacheSize),
		Logger:    log,
	})
}

// selfAddrs is what the workers' fetch policy knows of this process's own listeners: the
// proxy listeners and the admin API's, refreshed whenever either changes.
type selfAddrs struct {
	p atomic.Pointer[[]worker.Listener]
}

func (a *selfAddrs) get() []worker.Listener {
	if p := a.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (a *selfAddrs) set(ls []worker.Listener) { a.p.Store(&ls) }

// listenerAddr converts a bound address for the fetch policy.
func listenerAddr(a net.Addr, admin bool) (worker.Listener, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return worker.Listener{}, false
	}
	return worker.Listener{Addr: ta.AddrPort(), Admin: admin}, true
}

// refreshSelf records the listeners of cfg and the admin API's; s.mu is held.
func (s *serverProc) refreshSelf(cfg *config.Config) {
	var ls []worker.Listener
	for _, l := range cfg.Listeners {
		name := l.Name
		if name == "" {
			name = l.Address
		}
		if a := s.rt.Addr(name); a != nil {
			if x, ok := listenerAddr(a, false); ok {
				ls = append(ls, x)
			}
		}
	}
	if s.admSock != nil && s.adm != nil {
		if x, ok := listenerAddr(s.admSock.Addr(), true); ok {
			ls = append(ls, x)
		}
	}
	s.self.set(ls)
}

var _ admin.WorkerDeployer = (*serverProc)(nil)

// Workers lists the deployed workers.
func (s *serverProc) Workers() []admin.WorkerStatus {
	var out []admin.WorkerStatus
	for _, name := range s.workers.reg.Names() {
		if w := s.workers.reg.Get(name); w != nil {
			if v, ok := w.Version(); ok {
				out = append(out, workerStatus(v))
			}
		}
	}
	return out
}

func workerStatus(v worker.VersionInfo) admin.WorkerStatus {
	return admin.WorkerStatus{
		Name: v.Worker, Version: v.ID, Deployed: v.Deployed, Instances: v.Instances,
		CompileMillis:     float64(v.Compile.Microseconds()) / 1000,
		InstantiateMillis: float64(v.Instantiate.Microseconds()) / 1000,
	}
}

// DeployWorker deploys module as the new version of a configured worker, keeping its
// configured bindings and limits. The next reload deploys the configured module again.
func (s *serverProc) DeployWorker(ctx context.Context, name string, module []byte) (admin.WorkerStatus, error) {
	in := s.rt.Current()
	if in == nil {
		return admin.WorkerStatus{}, fmt.Errorf("worker %q: %w", name, admin.ErrNotFound)
	}
	for i := range in.Config.Workers {
		w := &in.Config.Workers[i]
		if w.Name != name {
			continue
		}
		wc, err := router.WorkerBindings(w)
		if err != nil {
			return admin.WorkerStatus{}, err
		}
		wc.Module = module
		v, err := s.workers.reg.Deploy(ctx, wc)
		if err != nil {
			return admin.WorkerStatus{}, err
		}
		return workerStatus(*v), nil
	}
	return admin.WorkerStatus{}, fmt.Errorf("worker %q is not configured: %w", name, admin.ErrNotFound)
}
