package router

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/objstore"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/worker"
)

// workerDeployTimeout bounds building and deploying the workers of one config.
const workerDeployTimeout = 10 * time.Minute

// WorkerConfig turns a worker's configuration into a deployable worker.Config: it reads the
// module (or builds the Go package with the local toolchain) and the secrets.
func WorkerConfig(ctx context.Context, w *config.Worker) (worker.Config, error) {
	wc, err := WorkerBindings(w)
	if err != nil {
		return wc, err
	}
	if w.Module != "" {
		wc.Module, err = os.ReadFile(w.Module)
	} else {
		wc.Module, err = buildPackage(ctx, w.Package)
	}
	if err != nil {
		return wc, fmt.Errorf("worker %s: %w", w.Name, err)
	}
	return wc, nil
}

// WorkerBindings is WorkerConfig without the module: name, variables, secrets, bindings and
// limits.
func WorkerBindings(w *config.Worker) (worker.Config, error) {
	wc := worker.Config{
		Name:    w.Name,
		Env:     map[string]string{},
		KV:      map[string]string{},
		Durable: map[string]worker.DurableBinding{},
		Limits: worker.Limits{
			CPUTime:      w.Limits.CPUTime.Std(),
			WallTime:     w.Limits.WallTime.Std(),
			Memory:       int64(w.Limits.Memory),
			Subrequests:  w.Limits.Subrequests,
			MaxInstances: w.Limits.MaxInstances,

			ObjectsPerInstance: w.Limits.ObjectsPerInstance,
		},
		Fetch: worker.FetchPolicy{Allow: w.Fetch.Allow},
	}
	for k, v := range w.Env {
		wc.Env[k] = v
	}
	for _, s := range w.Secrets {
		if s.File != "" {
			b, err := os.ReadFile(s.File)
			if err != nil {
				return wc, fmt.Errorf("worker %s: secret %s: %w", w.Name, s.Name, err)
			}
			wc.Env[s.Name] = strings.TrimRight(string(b), "\r\n")
		} else {
			wc.Env[s.Name] = os.Getenv(s.FromEnv)
		}
	}
	for _, k := range w.KV {
		wc.KV[k.Binding] = k.Namespace
	}
	for _, d := range w.DurableObjects {
		wc.Durable[d.Binding] = worker.DurableBinding{Class: d.Class, Namespace: d.Namespace}
	}
	if len(w.Services) > 0 {
		wc.Services = map[string]string{}
		for _, s := range w.Services {
			wc.Services[s.Binding] = s.Service
		}
	}
	if len(w.Buckets) > 0 {
		wc.Buckets = map[string]string{}
		for _, b := range w.Buckets {
			wc.Buckets[b.Binding] = b.Bucket
			if b.S3 == nil {
				continue
			}
			s, err := s3Bucket(b.S3)
			if err != nil {
				return wc, fmt.Errorf("worker %s: bucket %s: %w", w.Name, b.Binding, err)
			}
			if wc.BucketStores == nil {
				wc.BucketStores = map[string]objstore.Store{}
			}
			wc.BucketStores[b.Binding] = s
		}
	}
	if len(w.Queues.Producers) > 0 {
		wc.Queues = map[string]string{}
	}
	for _, p := range w.Queues.Producers {
		wc.Queues[p.Binding] = p.Queue
	}
	if w.AI != nil {
		b, err := workerAI(w.AI)
		if err != nil {
			return wc, fmt.Errorf("worker %s: ai: %w", w.Name, err)
		}
		wc.AI = b
	}
	for _, c := range w.Queues.Consumers {
		qc := worker.QueueConsumer{
			Queue: c.Queue, MaxBatchSize: c.MaxBatchSize, RetryDelay: c.RetryDelay.Std(),
			DeadLetterQueue: c.DeadLetterQueue, MaxConcurrency: c.MaxConcurrency, MaxBatchTimeout: -1,
		}
		if c.MaxBatchTimeout != nil && *c.MaxBatchTimeout > 0 {
			qc.MaxBatchTimeout = c.MaxBatchTimeout.Std()
		}
		if c.MaxRetries != nil {
			qc.MaxRetries = *c.MaxRetries
		}
		wc.Consumers = append(wc.Consumers, qc)
	}
	wc.Containers = ContainerClasses(w)
	return wc, nil
}

// s3Bucket opens the S3-compatible bucket c describes, reading its credentials.
func s3Bucket(c *config.WorkerS3) (*objstore.S3Bucket, error) {
	read := func(s config.SecretSource) (string, error) {
		if s.File == "" {
			return os.Getenv(s.FromEnv), nil
		}
		b, err := os.ReadFile(s.File)
		return strings.TrimRight(string(b), "\r\n"), err
	}
	ak, err := read(c.AccessKey)
	if err != nil {
		return nil, fmt.Errorf("s3 access key: %w", err)
	}
	sk, err := read(c.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("s3 secret key: %w", err)
	}
	return objstore.OpenS3(objstore.S3Options{Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket,
		AccessKey: ak, SecretKey: sk, PathStyle: c.PathStyle})
}

// buildPackage builds a Go worker package and returns the module.
func buildPackage(ctx context.Context, dir string) ([]byte, error) {
	f, err := os.CreateTemp("", "verge-worker-*.wasm")
	if err != nil {
		return nil, err
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	if err := worker.BuildGo(ctx, dir, name, worker.BuildOptions{}); err != nil {
		return nil, err
	}
	return os.ReadFile(name)
}

// WorkerModules picks the module a configured worker runs when a config is applied.
type WorkerModules interface {
	// WorkerModule returns the module to deploy for the worker name, given the module its
	// configuration names (read from the file or built from the package). It is called
	// once per worker for every config built, before the worker is deployed; returning
	// configured keeps today's behaviour.
	WorkerModule(name string, configured []byte) []byte
}

// deployWorkers deploys the config's workers that changed and resolves them for the routes.
// The workers are read (or built) and compiled in parallel, while the versions they replace
// keep serving; once every one is ready they are switched over together, so that a config
// whose workers do not all deploy changes none of them (NewInstance commits them last). With later set (a server's first
// configuration, started before its workers: Options.StartBeforeWorkers) the workers are only
// reserved, so that routes can refer to them, and in.pending deploys them, each switched in as
// soon as it is ready.
func (in *Instance) deployWorkers(cfg *config.Config, reg *worker.Registry, mods WorkerModules, later bool) error {
	if len(cfg.Workers) == 0 {
		return nil
	}
	if reg == nil {
		return errors.New("router: the config has workers but Deps.Workers is nil")
	}
	in.workers = map[string]*worker.Worker{}
	if later {
		for i := range cfg.Workers {
			w, err := reg.Reserve(cfg.Workers[i].Name)
			if err != nil {
				return err
			}
			in.workers[w.Name()] = w
		}
		in.pending = func() error {
			_, err := stageWorkers(cfg, reg, mods, true)
			return err
		}
		return nil
	}
	staged, err := stageWorkers(cfg, reg, mods, false)
	if err != nil {
		return err
	}
	in.staged = staged // committed when the whole generation is built
	for _, s := range staged {
		in.workers[s.Worker().Name()] = s.Worker()
	}
	for i := range cfg.Workers {
		name := cfg.Workers[i].Name
		if in.workers[name] == nil {
			in.workers[name] = reg.Get(name)
		}
	}
	return nil
}

// stageWorkers reads and stages the config's workers that changed, in parallel (at most
// GOMAXPROCS at a time, each compile using every core as well). With commit set each is
// committed when ready and the errors of all are returned; otherwise the staged versions
// are returned for the caller to commit, or, when one fails, discarded with the first error.
func stageWorkers(cfg *config.Config, reg *worker.Registry, mods WorkerModules, commit bool) ([]*worker.Staged, error) {
	ctx, cancel := context.WithTimeout(context.Background(), workerDeployTimeout)
	defer cancel()
	staged := make([]*worker.Staged, len(cfg.Workers))
	errs := make([]error, len(cfg.Workers))
	sem := make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))
	var wg sync.WaitGroup
	for i := range cfg.Workers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			staged[i], errs[i] = stageWorker(ctx, &cfg.Workers[i], reg, mods)
			if errs[i] != nil && !commit {
				cancel() // the others will be discarded: stop compiling them
			}
			switch {
			case commit && staged[i] != nil:
				staged[i].Commit()
			case commit && errs[i] != nil:
				// Requests waiting for the reserved worker stop waiting.
				reg.Abandon(cfg.Workers[i].Name, errs[i])
			}
		}()
	}
	wg.Wait()
	if commit {
		return nil, errors.Join(errs...)
	}
	// The first failure in config order; the others may be its cancellation.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		for _, s := range staged {
			if s != nil {
				s.Discard()
			}
		}
		return nil, first
	}
	out := staged[:0]
	for _, s := range staged {
		if s != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// stageWorker reads (or builds) one worker's module and stages it; nil when the worker runs
// this configuration already.
func stageWorker(ctx context.Context, w *config.Worker, reg *worker.Registry, mods WorkerModules) (*worker.Staged, error) {
	wc, err := WorkerConfig(ctx, w)
	if err != nil {
		return nil, err
	}
	if mods != nil {
		wc.Module = mods.WorkerModule(w.Name, wc.Module)
	}
	return reg.StageIfChanged(ctx, wc)
}

var errWorkerGone = errors.New("worker was removed")

// serveWorker answers the request with the route's worker. A failure before any response is
// answered with the worker error's status, or passed on to the route's upstream when the
// route says so and the worker did not consume the request body.
func (p *phases) serveWorker(s *proxy.Session, r *route) (bool, error) {
	req := &worker.Request{Message: s.Req, TLS: p.tls}
	if ca := s.ClientAddr(); ca.IsValid() {
		req.RemoteAddr = ca.Addr().Unmap().String()
	}
	ex, cx := compressedExchange(s, r)
	res, err := r.worker.Serve(s.Context(), ex, req)
	if cx != nil {
		res.BytesSent = cx.BytesWritten()
		cx.Release()
	}
	s.BytesSent += res.BytesSent
	if res.Status != 0 {
		s.Status = res.Status
	}
	if err == nil {
		return true, nil
	}
	var we *worker.Error
	if !errors.As(err, &we) {
		we = &worker.Error{Kind: worker.Crashed, Worker: r.worker.Name(), Cause: err}
	}
	if !we.Responded && r.workerFallback && !res.BodyRead {
		return false, nil
	}
	return true, &fault.Error{Source: fault.Internal, Kind: fault.Unknown, Status: we.StatusCode(), Cause: we}
}
