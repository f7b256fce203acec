package worker

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// DefaultPendingWait bounds how long a request for a worker that has no version yet (its
// first deploy is compiling, as while a server starts with an empty compilation cache) waits
// for one before it is answered Unavailable (503).
const DefaultPendingWait = 30 * time.Second

// errNotDeployed is the cause of requests that found no version: the worker's first deploy
// failed, or it was removed.
var errNotDeployed = errors.New("the worker has no deployed version")

// deployState is a Worker's deployment bookkeeping: its versions being staged, and the
// first version's arrival that requests of a worker without one wait for.
type deployState struct {
	// staging counts Stage calls in progress or staged versions not yet committed or
	// discarded; guarded by Registry.mu. A worker that has no version is forgotten only
	// when none is left.
	staging int
	// ready is closed once the worker has a version, or when it will get none (its first
	// deploy failed, it was removed); readyErr then says why.
	readyOnce sync.Once
	ready     chan struct{}
	readyErr  error
}

// settle closes ready, recording err when the worker got no version.
func (d *deployState) settle(err error) {
	d.readyOnce.Do(func() {
		d.readyErr = err
		close(d.ready)
	})
}

// awaitVersion waits for the first version of a worker that has none (see Stage), up to
// DefaultPendingWait or the end of ctx, and takes a ref on it; nil with the reason when
// there is none.
func (w *Worker) awaitVersion(ctx context.Context) (*version, error) {
	t := time.NewTimer(DefaultPendingWait)
	defer t.Stop()
	select {
	case <-w.dep.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("the worker's first version is still being deployed")
	}
	if v := w.acquireCurrent(w.cur.Load()); v != nil {
		return v, nil
	}
	if err := w.dep.readyErr; err != nil {
		return nil, err
	}
	return nil, errNotDeployed
}

// Staged is a version compiled and initialized but not serving yet (Registry.Stage). Exactly
// one of Commit and Discard must be called.
type Staged struct {
	w    *Worker
	v    *version
	done bool
}

// Worker returns the worker the version belongs to.
func (s *Staged) Worker() *Worker { return s.w }

// Stage compiles cfg and creates its first instance, without making it the current version:
// the worker's current version, if any, keeps serving until Commit switches over (atomically:
// requests that started before finish on the old version). A worker deployed for the first
// time is registered at once (Get finds it) without a version; requests to it wait for the
// first version, up to DefaultPendingWait. On error nothing changes (a worker with no version
// is forgotten again, the requests waiting for it answered Unavailable) and the error is
// logged.
func (r *Registry) Stage(ctx context.Context, cfg Config) (*Staged, error) {
	w, err := r.reserve(cfg.Name)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cfg.Module)
	return r.stageOn(ctx, w, cfg, sum, configHash(&cfg, sum))
}

// Reserve registers worker name, if it is not deployed yet, without a version: requests to
// it wait for the first version that a later Stage or Deploy gives it (up to
// DefaultPendingWait). Reserve followed by Stage lets a server route to a worker while its
// module compiles. A reserved worker that gets no version is forgotten by its first failed
// Stage; Remove forgets it as well.
func (r *Registry) Reserve(name string) (*Worker, error) {
	w, err := r.reserve(name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	w.dep.staging--
	r.mu.Unlock()
	return w, nil
}

// Abandon forgets worker name if it was reserved and got no version and no stage is in
// progress (its module could not be read, say): requests waiting for it are answered
// Unavailable with cause. It does nothing to a worker that has a version.
func (r *Registry) Abandon(name string, cause error) {
	r.mu.Lock()
	w := r.workers[name]
	forget := w != nil && w.dep.staging == 0 && w.cur.Load() == nil
	if forget {
		delete(r.workers, name)
	}
	r.mu.Unlock()
	if forget {
		w.dep.settle(cause)
	}
}

// reserve returns worker name, created without a version if needed, counting one more stage
// in progress.
func (r *Registry) reserve(name string) (*Worker, error) {
	if name == "" {
		return nil, errors.New("worker: Config.Name is required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("worker: registry closed")
	}
	w := r.workers[name]
	if w == nil {
		w = r.newWorker(name)
		r.workers[name] = w
	}
	w.dep.staging++
	return w, nil
}

// stageOn builds the version of cfg (whose module's SHA-256 is sum and summary hash) for w,
// on which reserve counted a stage.
func (r *Registry) stageOn(ctx context.Context, w *Worker, cfg Config, sum, hash [32]byte) (*Staged, error) {
	v, err := w.newVersion(ctx, cfg, sum, hash)
	if err != nil {
		old := w.cur.Load() != nil
		r.unstage(w, err)
		if old {
			r.svc.Logger.Warn("worker deploy failed; the previous version keeps serving", "worker", w.name, "err", err)
		} else {
			r.svc.Logger.Warn("worker deploy failed", "worker", w.name, "err", err)
		}
		return nil, err
	}
	return &Staged{w: w, v: v}, nil
}

// unstage ends a stage that brought no version: a worker left without a version and with
// no other stage is forgotten, and the requests waiting for it fail with cause.
func (r *Registry) unstage(w *Worker, cause error) {
	r.mu.Lock()
	w.dep.staging--
	forget := w.dep.staging == 0 && w.cur.Load() == nil
	if forget && r.workers[w.name] == w {
		delete(r.workers, w.name)
	}
	r.mu.Unlock()
	if forget {
		w.dep.settle(cause)
	}
}

// Commit makes the staged version the worker's current one and retires the previous, which
// closes once its requests in flight (and live Durable Objects) are done. It returns the
// new version's description.
func (s *Staged) Commit() VersionInfo {
	s.w.deployMu.Lock()
	defer s.w.deployMu.Unlock()
	return s.commitLocked()
}

// commitLocked is Commit with w.deployMu held.
func (s *Staged) commitLocked() VersionInfo {
	if s.done {
		panic("worker: Staged committed or discarded twice")
	}
	s.done = true
	w, r := s.w, s.w.reg
	r.mu.Lock()
	w.dep.staging--
	closed := r.closed
	if r.workers[w.name] == nil && !closed {
		// Forgotten meanwhile (another stage of a worker without a version failed):
		// registered again with this version.
		r.workers[w.name] = w
	}
	r.mu.Unlock()
	if closed {
		s.v.retire()
		w.dep.settle(errNotDeployed)
		return s.v.info()
	}
	if old := w.cur.Swap(s.v); old != nil {
		old.retire()
	}
	w.syncConsumers(s.v)
	r.setContainers(w.name, s.v.containers)
	w.dep.settle(nil)
	info := s.v.info()
	r.svc.Logger.Info("worker deployed", "worker", w.name, "version", info.ID, "compile", info.Compile, "instantiate", info.Instantiate)
	return info
}

// Discard releases a staged version that will not serve (another worker of the same
// configuration failed, say). A worker that has no version is forgotten.
func (s *Staged) Discard() {
	if s.done {
		return
	}
	s.done = true
	s.v.retire()
	s.w.reg.unstage(s.w, errNotDeployed)
}
