package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/admin"
	"github.com/verge-edge/verge/cluster"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/cron"
	cronclustered "github.com/verge-edge/verge/cron/clustered"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/durable/clustered"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/objstore"
	"github.com/verge-edge/verge/observe"
	"github.com/verge-edge/verge/queue"
	"github.com/verge-edge/verge/router"
	"github.com/verge-edge/verge/worker"
)

// workerStopTimeout bounds closing the workers (in-flight requests, Durable Object commits).
const workerStopTimeout = 10 * time.Second

// workerStack is the worker registry with the embedded storage under one data directory:
// <data>/kv (KV namespaces), <data>/objects (object storage buckets), <data>/do (Durable
// Objects), <data>/queues (queues), <data>/cache (compiled code). In a cluster, KV namespaces
// are JetStream buckets, object storage buckets JetStream object stores, queues JetStream
// streams, and Durable Objects are placed by leases,
// their batches replicated through JetStream, their owner's copies under <data>/do-cluster.
type workerStack struct {
	reg *worker.Registry
	kv  kv.Store
	obj objstore.Store
	do  durable.Store
	q   queue.Store
	dc  *clustered.Service // nil without a cluster
	// cron fires the workers' cron triggers (started by verge run only); its claims are
	// <data>/cron/state.json, or the cluster's bucket.
	cron *cron.Scheduler
	// containers run the workers' containers (containers.go).
	containers *containers.Manager
	cr         *config.ContainerRuntime
}

// Subrequests go through the registry's own transport (its dialer enforces each worker's
// fetch policy), not the proxy's; listeners tells the policy which addresses are Verge's own.
// memoryLimit caps the linear memory of all instances together (0: the default). node is
// the cluster node, nil without a cluster (storage is then SQLite files under dataDir).
// httpCache backs the workers' Cache API (nil: none).
// cr runs the workers' containers.
func newWorkerStack(dataDir string, memoryLimit int64, listeners func() []worker.Listener, log *slog.Logger, node *cluster.Node, c *config.Cluster, httpCache worker.HTTPCache, cr *config.ContainerRuntime) (*workerStack, error) {
	ws := &workerStack{cr: cr}
	svc := worker.Services{
		Cache:       httpCache,
		CacheDir:    filepath.Join(dataDir, "cache"),
		Listeners:   listeners,
		Logger:      log,
		MemoryLimit: memoryLimit,
	}
	if node == nil {
		s, err := kv.OpenSQLite(filepath.Join(dataDir, "kv"))
		if err != nil {
			return nil, err
		}
		ws.kv = s
		if ws.obj, err = objstore.OpenLocal(filepath.Join(dataDir, "objects")); err != nil {
			s.Close()
			return nil, err
		}
		ws.do = durable.OpenSQLite(filepath.Join(dataDir, "do"))
		qs, err := queue.OpenSQLite(context.Background(), filepath.Join(dataDir, "queues"))
		if err != nil {
			ws.kv.Close()
			ws.obj.Close()
			ws.do.Close()
			return nil, err
		}
		ws.q = qs
	} else {
		ws.obj = objstore.NewJetStreamStore(node.JetStream(), node.Replicas())
		ws.kv = kv.NewJetStreamStore(node, kv.JetStreamOptions{
			CacheTTL:  c.KVCacheTTL.Std(),
			CacheSize: int64(c.KVCacheSize),
			Logger:    log,
		})
		// The owner's copies live apart from a single node's databases: an activation
		// rebuilds its object's file from the log, which must never overwrite the data
		// of a node that ran without a cluster before.
		dc, err := clustered.Open(node, clustered.Options{Dir: filepath.Join(dataDir, "do-cluster"), Logger: log})
		if err != nil {
			ws.kv.Close()
			ws.obj.Close()
			return nil, err
		}
		ws.dc, ws.do = dc, dc.Store
		ws.q = queue.NewJetStreamStore(node)
		svc.Placement, svc.Router = dc.Placement, dc.Forwarder
	}
	var err error
	if ws.containers, err = newContainers(cr, dataDir, log, func() *worker.Registry { return ws.reg }); err != nil {
		return nil, err
	}
	svc.Containers = ws.containers
	svc.KV, svc.Durable, svc.Objects = ws.kv, ws.do, ws.obj
	if ws.q != nil {
		svc.Queues = ws.q
	}
	ws.reg = worker.NewRegistry(svc)
	var claims cron.Claims = cron.NewFileClaims(filepath.Join(dataDir, "cron", "state.json"))
	if node != nil {
		claims = cronclustered.New(node)
	}
	ws.cron = cron.New(cron.Options{Claims: claims, Fire: ws.fireScheduled, Logger: log})
	return ws, nil
}

// fireScheduled runs a cron slot's scheduled handler in its worker.
func (w *workerStack) fireScheduled(ctx context.Context, ev cron.Event) error {
	wk := w.reg.Get(ev.Worker)
	if wk == nil {
		return fmt.Errorf("worker %s is not deployed", ev.Worker)
	}
	_, err := wk.Scheduled(ctx, worker.ScheduledEvent{Cron: ev.Cron, Time: ev.Time})
	return err
}

// cronTriggers lists the cron triggers of cfg's workers.
func cronTriggers(cfg *config.Config) []cron.Trigger {
	var ts []cron.Trigger
	for _, w := range cfg.Workers {
		for _, c := range w.Triggers.Crons {
			ts = append(ts, cron.Trigger{Worker: w.Name, Cron: c})
		}
	}
	return ts
}

// cronSamples converts the scheduler's counters for the verge_worker_cron_* metrics.
func (w *workerStack) cronSamples() []observe.CronSample {
	st := w.cron.Stats()
	out := make([]observe.CronSample, len(st))
	for i, s := range st {
		out[i] = observe.CronSample{Worker: s.Worker, Fired: s.Fired, Failed: s.Failed, Skipped: s.Skipped}
	}
	return out
}

func (w *workerStack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), workerStopTimeout)
	defer cancel()
	// No slot fires once the workers start closing; scheduled handlers running finish.
	w.cron.Close(ctx)
	if w.dc != nil {
		// Requests forwarded here finish before the objects close and their leases go.
		w.dc.Drain(ctx)
	}
	w.reg.Close(ctx)
	cctx, ccancel := context.WithTimeout(context.Background(), containerStopTimeout(w.cr))
	w.containers.Close(cctx)
	ccancel()
	if w.dc != nil {
		w.dc.Close()
	} else {
		w.do.Close()
	}
	w.kv.Close()
	if w.q != nil {
		w.q.Close()
	}
	w.obj.Close()
}

// bucketMetrics feeds the buckets' counters to the verge_worker_bucket_* metrics.
func (w *workerStack) bucketMetrics(fn func(observe.BucketSample)) {
	for _, s := range w.reg.BucketStats() {
		fn(observe.BucketSample{Bucket: s.Bucket, Ops: s.Ops, Errors: s.Errors, BytesIn: s.BytesIn, BytesOut: s.BytesOut})
	}
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

// Workers lists the deployed workers; on a cluster node each says where its version came
// from.
func (s *serverProc) Workers() []admin.WorkerStatus {
	var out []admin.WorkerStatus
	for _, name := range s.workers.reg.Names() {
		if w := s.workers.reg.Get(name); w != nil {
			if v, ok := w.Version(); ok {
				st := workerStatus(v)
				if s.deploys != nil {
					st.Source, st.ClusterVersion, st.ClusterNote = s.deploys.source(name, v.ID)
				}
				out = append(out, st)
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

// configuredWorker returns the configuration of worker name in the config in effect.
func (s *serverProc) configuredWorker(name string) (*config.Worker, error) {
	if in := s.rt.Current(); in != nil {
		for i := range in.Config.Workers {
			if w := &in.Config.Workers[i]; w.Name == name {
				return w, nil
			}
		}
	}
	return nil, fmt.Errorf("worker %q is not configured: %w", name, admin.ErrNotFound)
}

// deployLocked deploys module as worker name's new version with its configured bindings and
// limits; s.mu is held.
func (s *serverProc) deployLocked(ctx context.Context, name string, module []byte) (*worker.VersionInfo, error) {
	w, err := s.configuredWorker(name)
	if err != nil {
		return nil, err
	}
	wc, err := router.WorkerBindings(w)
	if err != nil {
		return nil, err
	}
	wc.Module = module
	return s.workers.reg.Deploy(ctx, wc)
}

// DeployWorker deploys module as the new version of a configured worker, keeping its
// configured bindings and limits. Outside a cluster the next reload deploys the configured
// module again; on a cluster node the version is stored in the cluster and every node
// deploys it (docs/cluster.md#deployments).
func (s *serverProc) DeployWorker(ctx context.Context, name string, module []byte) (admin.WorkerStatus, error) {
	if s.deploys != nil {
		return s.deployCluster(ctx, name, module)
	}
	s.mu.Lock()
	v, err := s.deployLocked(ctx, name, module)
	s.mu.Unlock()
	if err != nil {
		return admin.WorkerStatus{}, err
	}
	return workerStatus(*v), nil
}

// deployCluster deploys module on this node first (a module that does not deploy is refused
// and not stored), then stores it in the cluster and waits, bounded, for the members to
// report it running. When it cannot be stored this node goes back to what it ran.
func (s *serverProc) deployCluster(ctx context.Context, name string, module []byte) (admin.WorkerStatus, error) {
	s.mu.Lock()
	v, err := s.deployLocked(ctx, name, module)
	configured, _ := s.deploys.configuredSHA(name)
	s.mu.Unlock()
	if err != nil {
		return admin.WorkerStatus{}, err
	}
	if _, err := s.deploys.put(ctx, name, v.ID, module, configured); err != nil {
		if rerr := s.syncWorker(context.WithoutCancel(ctx), name); rerr != nil {
			s.log.Error("cluster deployments: cannot go back to the previous version", "worker", name, "err", rerr)
		}
		return admin.WorkerStatus{}, fmt.Errorf("worker %s: not deployed, this node serves its previous version again: %w", name, err)
	}
	// A reload between the local deploy and the store went back to the previous version:
	// deploy the stored one again (nothing to do when it runs).
	if err := s.syncWorker(ctx, name); err != nil {
		s.log.Error("cluster deployments: cannot deploy the stored version", "worker", name, "err", err)
	}
	s.deploys.notify()
	st := workerStatus(*v)
	st.Source, st.ClusterVersion, st.ClusterNote = s.deploys.source(name, v.ID)
	st.Cluster = s.deploys.confirm(ctx, name, v.ID)
	st.Cluster.Stored = true
	return st, nil
}

var _ admin.ClusterDeployer = (*serverProc)(nil)

// DropDeployment deletes the cluster's stored version of worker name: every node returns to
// its configured module.
func (s *serverProc) DropDeployment(ctx context.Context, name string) (*admin.ClusterDeploy, error) {
	if s.deploys == nil {
		return nil, fmt.Errorf("this server is not in a cluster (no cluster section): %w", errors.ErrUnsupported)
	}
	ok, err := s.deploys.drop(ctx, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("worker %q has no cluster deployment: %w", name, admin.ErrNotFound)
	}
	return s.deploys.confirm(ctx, name, ""), nil
}

// syncWorker deploys the module worker name should run now (a stored cluster version or the
// configured module; deploySync.desired) with its configured bindings and limits, unless it
// runs it already. Reloads hold s.mu as well, so the two never interleave.
func (s *serverProc) syncWorker(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return nil
	}
	w, err := s.configuredWorker(name)
	if err != nil {
		return nil // not configured here: nothing to run
	}
	module := s.deploys.desired(name)
	if module == nil {
		return nil
	}
	wc, err := router.WorkerBindings(w)
	if err != nil {
		return err
	}
	wc.Module = module
	_, err = s.workers.reg.Ensure(ctx, wc)
	return err
}

// runningVersion returns the id of the version worker name runs, "" when none.
func (s *serverProc) runningVersion(name string) string {
	if w := s.workers.reg.Get(name); w != nil {
		if v, ok := w.Version(); ok {
			return v.ID
		}
	}
	return ""
}

// queueMetrics feeds the queues' counters to the verge_worker_queue_* metrics at each
// scrape.
type queueMetrics struct{ reg *worker.Registry }

// queueStatsTimeout bounds reading the queues' backlogs for one scrape.
const queueStatsTimeout = 2 * time.Second

func (m queueMetrics) EachQueue(fn func(observe.QueueSample)) {
	ctx, cancel := context.WithTimeout(context.Background(), queueStatsTimeout)
	defer cancel()
	for _, st := range m.reg.QueueStats(ctx) {
		fn(observe.QueueSample{Queue: st.Queue, Sent: st.Sent, Delivered: st.Delivered, Acked: st.Acked,
			Retried: st.Retried, DeadLettered: st.DeadLettered, Backlog: st.Backlog})
	}
}

// workerMetrics feeds the workers' counters to the verge_worker_* metrics at each scrape.
type workerMetrics struct{ reg *worker.Registry }

func (m workerMetrics) EachWorker(fn func(observe.WorkerSample)) {
	for _, st := range m.reg.Stats() {
		fn(observe.WorkerSample{
			Worker: st.Worker, Invocations: st.Invocations, Errors: st.Errors, CPU: st.CPU,
			IdleInstances: st.IdleInstances, BusyInstances: st.BusyInstances,
			LiveObjects: st.LiveObjects, ObjectInstances: st.ObjectInstances, Evictions: st.Evictions, Memory: st.Memory,
			WebSockets: st.WebSockets, WebSocketMessagesIn: st.WebSocketMessagesIn, WebSocketMessagesOut: st.WebSocketMessagesOut,
			CacheOps: st.CacheOps,
		})
	}
}

var _ admin.ScheduledRunner = (*serverProc)(nil)

// RunScheduled fires a slot of a worker's cron trigger by hand (POST
// /workers/{name}/scheduled): claimed like a slot the timer fires, so it runs once at most.
func (s *serverProc) RunScheduled(ctx context.Context, name, expr string, at time.Time) (admin.ScheduledRun, error) {
	ev, fired, err := s.workers.cron.FireSlot(ctx, name, expr, at)
	switch {
	case errors.Is(err, cron.ErrNoTrigger):
		err = fmt.Errorf("%w: %w", err, admin.ErrNotFound)
	case errors.Is(err, cron.ErrFutureSlot):
		err = fmt.Errorf("%w: %w", err, admin.ErrInvalidSlot)
	}
	if err != nil {
		return admin.ScheduledRun{}, err
	}
	return admin.ScheduledRun{Worker: name, Cron: expr, Slot: ev.Time, Fired: fired}, nil
}
