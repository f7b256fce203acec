// Package worker runs WebAssembly workers inside Verge: modules built with the guest SDK
// (sdk/go) or any language that implements docs/workers-abi.md. A Registry holds the
// deployed workers by name; each deployment is a version with its own compiled module
// (loaded from an on-disk compilation cache when possible) and a pool of initialized
// instances reused across requests. Every invocation runs under a CPU-time limit, a
// wall-time limit, a memory cap and a subrequest limit; an instance that traps, panics,
// exceeds a limit or runs out of memory is discarded and its request fails (ErrorKind says
// how), without affecting other requests.
//
// Bindings reach KV namespaces (package kv), Durable Objects (package durable, whose class
// code runs in instances of the same module that host several live objects each; see
// objects.go), environment variables, secrets, and
// outgoing HTTP through an upstream transport of the registry's own, limited by each
// worker's FetchPolicy (the public internet only, unless the operator allows more).
package worker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/objstore"
	"github.com/verge-edge/verge/queue"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker/internal/wasm"
)

// Defaults of Limits.
const (
	DefaultCPUTime      = 100 * time.Millisecond
	DefaultWallTime     = 30 * time.Second
	DefaultMemory       = 128 << 20
	DefaultSubrequests  = 50
	DefaultMaxInstances = 16
	// DefaultObjectsPerInstance is Limits.ObjectsPerInstance's default (see docs/workers.md,
	// Density, for how it was chosen).
	DefaultObjectsPerInstance = 16
	// DefaultInitTime bounds instantiating a module (its _initialize).
	DefaultInitTime = 10 * time.Second
	// MaxFetchBody bounds a response body held whole in memory: a subrequest's for modules
	// built before streaming (the Go SDK now streams bodies), and a Durable Object's response
	// held back inside a storage transaction.
	MaxFetchBody = 32 << 20
)

// Limits bound each invocation of a worker. Zero fields take the defaults.
type Limits struct {
	// CPUTime bounds the CPU time the guest uses per request: the CPU clock of the thread
	// running it (on Linux; wall time elsewhere), excluding host calls (storage,
	// subrequests, Durable Object calls, sleeps, response writes). Time spent waiting for a
	// CPU on a busy machine is not counted; neither is the first millisecond of guest
	// execution, before the clock is first read (see cpuMeter). Zero means DefaultCPUTime
	// (100ms).
	CPUTime time.Duration
	// WallTime bounds a whole invocation including host calls and waitUntil work. Zero
	// means DefaultWallTime (30s).
	WallTime time.Duration
	// Memory caps each instance's linear memory in bytes. Zero means DefaultMemory (128 MiB).
	Memory int64
	// Subrequests caps Fetch calls per request. Zero means DefaultSubrequests (50).
	Subrequests int
	// MaxInstances caps the pooled instances of a version (concurrent requests beyond it
	// wait). Zero means DefaultMaxInstances (16).
	MaxInstances int
	// ObjectsPerInstance caps the live Durable Objects hosted by one instance: objects of a
	// version share instances, their requests running one at a time in each. A guest built
	// with an SDK older than ABI version 2 gets one instance per object whatever this says.
	// Zero means DefaultObjectsPerInstance (16); 1 gives every object its own instance.
	ObjectsPerInstance int
}

func (l *Limits) setDefaults() {
	if l.CPUTime <= 0 {
		l.CPUTime = DefaultCPUTime
	}
	if l.WallTime <= 0 {
		l.WallTime = DefaultWallTime
	}
	if l.Memory <= 0 {
		l.Memory = DefaultMemory
	}
	if l.Subrequests <= 0 {
		l.Subrequests = DefaultSubrequests
	}
	if l.MaxInstances <= 0 {
		l.MaxInstances = DefaultMaxInstances
	}
	if l.ObjectsPerInstance <= 0 {
		l.ObjectsPerInstance = DefaultObjectsPerInstance
	}
}

// DurableBinding binds a Durable Object namespace whose class is defined by the worker.
type DurableBinding struct {
	// Class is the class name the guest registers (sdk.DefineDurableObject). Required.
	Class string
	// Namespace names the objects' storage. Empty means "<worker>-<class>".
	Namespace string
}

// Config is one deployment of a worker.
type Config struct {
	// Name identifies the worker. Required.
	Name string
	// Module is the WebAssembly binary. Required.
	Module []byte
	// Env holds environment variables and secrets, read by the guest with sdk.Env.
	Env map[string]string
	// KV maps binding names to KV namespace names.
	KV map[string]string
	// Durable maps binding names to Durable Object namespaces.
	Durable map[string]DurableBinding
	// Buckets maps binding names to object storage bucket names (Services.Objects).
	Buckets map[string]string
	// BucketStores gives bindings of Buckets a store of their own (an S3-compatible
	// bucket, objstore.OpenS3) instead of Services.Objects. A store with a
	// ConfigKey() string method is recognised by it across deploys (Ensure).
	BucketStores map[string]objstore.Store
	// Queues maps producer binding names to queue names (sdk.Queue).
	Queues map[string]string
	// Consumers make the worker the consumer of queues: their batches run its queue
	// handler (sdk.HandleQueue) under Limits.
	Consumers []QueueConsumer
	// Limits bound each invocation.
	Limits Limits
	// Fetch decides where subrequests may connect. The zero value reaches only the public
	// internet (see FetchPolicy).
	Fetch FetchPolicy
	// Services maps service binding names to the names of the workers they call
	// (sdk.Service; service.go). A target need not be deployed yet: a call to one that is
	// not fails.
	Services map[string]string
	// Containers bind container images to Durable Object classes of the worker
	// (Services.Containers runs them; containers.go). A deploy stops the instances of the
	// previous version.
	Containers []containers.ClassConfig
	// AI is the worker's AI binding (sdk.AI; ai.go). Nil means none.
	AI *AIBinding
}

// RoundTripper sends subrequests; *upstream.Transport implements it.
type RoundTripper interface {
	RoundTrip(ctx context.Context, peer *upstream.Peer, req *message.Request) (*message.Response, error)
}

// ObjectRouter delivers Durable Object requests to the node that owns the object. Each
// namespace's requests run on the owner through the handler registered for it; payloads
// and responses are opaque to the router.
type ObjectRouter interface {
	// Call runs a request for object id of namespace, here or on its owner, and returns
	// the handler's response.
	Call(ctx context.Context, namespace string, id durable.ID, payload []byte) ([]byte, error)
	// Handle sets the handler of a namespace's requests; nil removes it.
	Handle(namespace string, h func(ctx context.Context, id durable.ID, payload []byte) ([]byte, error))
}

// Services are what workers share: storage, the compilation cache, the transport.
type Services struct {
	// CacheDir keeps compiled machine code across processes. Empty means in memory only.
	CacheDir string
	// KV stores KV namespaces. Nil makes KV bindings fail to deploy.
	KV kv.Store
	// Durable stores Durable Objects. Nil makes Durable Object bindings fail to deploy.
	Durable durable.Store
	// Objects stores object storage buckets. Nil makes bucket bindings fail to deploy.
	Objects objstore.Store
	// Queues stores queues. Nil makes queue bindings and consumers fail to deploy.
	Queues queue.Store
	// Placement places Durable Objects. Nil means durable.Local.
	Placement durable.Placement
	// Router runs Durable Object requests on the node that owns the object, in a
	// cluster (*clustered.Forwarder implements it). Nil means every object runs here.
	Router ObjectRouter
	// Cache backs the Cache API (sdk.Cache, sdk.OpenCache): each worker's entries live in
	// namespaces of its own. Nil makes the Cache API fail with ErrUnavailable.
	// *cache.Cache implements it.
	Cache HTTPCache
	// Transport sends subrequests, to the address the fetch policy checked (a name in the
	// URL is resolved and checked first; Peer.Address is the allowed IP). Nil means the
	// registry's own transport, whose dialer also checks every connection's address after
	// resolution (FetchPolicy); a caller's transport is trusted to dial what it is given.
	Transport RoundTripper
	// Listeners returns the addresses Verge itself listens on; subrequests to them are
	// refused (the admin API's always, the others unless allowed as ip:port). Nil means
	// none are known.
	Listeners func() []Listener
	// Logger receives guest logs and output and runtime events. Nil means slog.Default().
	Logger *slog.Logger
	// ObjectIdleTimeout is how long an idle Durable Object stays live. Zero means
	// durable.DefaultIdleTimeout.
	ObjectIdleTimeout time.Duration
	// MaxLiveObjects caps the live Durable Objects of each namespace: activating one more
	// evicts the least recently used idle one. Zero means durable.DefaultMaxLive (1024).
	MaxLiveObjects int
	// MemoryLimit caps the sum of the linear memory of all instances of the registry, in
	// bytes. A request whose new instance, or whose instance's growth, would exceed it
	// waits up to DefaultMemoryWait for memory (idle pooled instances are closed first) and
	// then fails with MemoryLimit (503). Zero means DefaultMemoryLimit() (half the machine's
	// or cgroup's memory); negative means no limit.
	MemoryLimit int64
	// InstanceIdleTimeout is how long a pooled instance may stay unused before it is closed,
	// giving its memory back; each version keeps its most recently used instance. Zero
	// means DefaultInstanceIdleTimeout (30s); negative means never.
	InstanceIdleTimeout time.Duration
	// Containers runs the containers of Durable Object classes (Config.Containers). Nil
	// means none: the container operations fail.
	Containers *containers.Manager
}

// Registry holds the deployed workers by name.
type Registry struct {
	svc Services
	// fetch is the registry's own subrequest transport (Services.Transport nil).
	fetch  *upstream.Transport
	memory *memoryBudget
	// objStats counts each bound bucket's operations (buckets.go).
	objStats bucketStatsSet
	qs       queueState    // queues in use, for metrics (queues.go)
	stop     chan struct{} // closed by Close: ends trimLoop
	done     chan struct{} // closed when trimLoop has ended

	mu      sync.Mutex
	workers map[string]*Worker
	closed  bool
}

// NewRegistry returns an empty registry.
func NewRegistry(svc Services) *Registry {
	if svc.Logger == nil {
		svc.Logger = slog.Default()
	}
	if svc.Placement == nil {
		svc.Placement = durable.Local{}
	}
	compilerWarning.Do(func() {
		if err := wasm.CompilerAvailable(); err != nil {
			svc.Logger.Warn("WebAssembly compiler unavailable: workers will run in the interpreter, about 40 times slower", "cause", err)
		}
	})
	if svc.MemoryLimit == 0 {
		svc.MemoryLimit = DefaultMemoryLimit()
	}
	if svc.InstanceIdleTimeout == 0 {
		svc.InstanceIdleTimeout = DefaultInstanceIdleTimeout
	}
	r := &Registry{svc: svc, workers: map[string]*Worker{}, stop: make(chan struct{}), done: make(chan struct{})}
	if svc.Transport == nil {
		r.fetch = newFetchTransport()
		r.svc.Transport = r.fetch
	}
	r.memory = newMemoryBudget(svc.MemoryLimit, DefaultMemoryWait)
	go r.trimLoop()
	return r
}

// MemoryInUse returns the bytes of linear memory held by the registry's instances (pooled,
// running and Durable Objects'), what Services.MemoryLimit caps.
func (r *Registry) MemoryInUse() int64 { return r.memory.inUse() }

// trimLoop closes instances idle for longer than Services.InstanceIdleTimeout until Close.
func (r *Registry) trimLoop() {
	defer close(r.done)
	timeout := r.svc.InstanceIdleTimeout
	if timeout < 0 {
		<-r.stop
		return
	}
	t := time.NewTicker(max(timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.trim(now.Add(-timeout))
		}
	}
}

// trim closes the pooled instances idle since before cutoff, keeping each version's most
// recently used one; a zero cutoff (memory is short) closes every idle instance.
func (r *Registry) trim(cutoff time.Time) {
	r.mu.Lock()
	ws := slices.Collect(maps.Values(r.workers))
	r.mu.Unlock()
	for _, w := range ws {
		if v := w.cur.Load(); v != nil {
			v.trim(cutoff)
		}
	}
}

// compilerWarning makes the first registry of the process say when workers cannot be
// compiled to machine code (see wasm.CompilerAvailable).
var compilerWarning sync.Once

// Get returns the worker name, or nil.
func (r *Registry) Get(name string) *Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workers[name]
}

// Names returns the deployed workers' names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.workers))
}

// Deploy compiles cfg and makes it the worker's current version, creating the worker if
// needed: Stage then Commit. The previous version keeps serving while the new one compiles;
// then new requests use the new one at once and requests in flight finish on the previous
// version, which is released afterwards. Its first instance is created before Deploy
// returns, so the first request finds it warm. On error the previous version keeps serving.
// Deploys of one worker are serialized: the last one called wins.
func (r *Registry) Deploy(ctx context.Context, cfg Config) (*VersionInfo, error) {
	sum := sha256.Sum256(cfg.Module)
	return r.deploy(ctx, cfg, sum, configHash(&cfg, sum))
}

func (r *Registry) deploy(ctx context.Context, cfg Config, sum, hash [32]byte) (*VersionInfo, error) {
	w, err := r.reserve(cfg.Name)
	if err != nil {
		return nil, err
	}
	w.deployMu.Lock()
	defer w.deployMu.Unlock()
	s, err := r.stageOn(ctx, w, cfg, sum, hash)
	if err != nil {
		return nil, err
	}
	info := s.commitLocked()
	return &info, nil
}

// Ensure deploys cfg unless the worker's current version was deployed from an identical
// Config (same module, bindings, variables and limits), and reports whether it deployed.
// Config reloads use it so that unchanged workers keep their warm instances.
func (r *Registry) Ensure(ctx context.Context, cfg Config) (bool, error) {
	sum := sha256.Sum256(cfg.Module)
	hash := configHash(&cfg, sum)
	if !r.changed(cfg.Name, hash) {
		return false, nil
	}
	_, err := r.deploy(ctx, cfg, sum, hash)
	return err == nil, err
}

// StageIfChanged is Ensure's Stage: nil (and no error) when the worker's current version was
// deployed from an identical Config.
func (r *Registry) StageIfChanged(ctx context.Context, cfg Config) (*Staged, error) {
	sum := sha256.Sum256(cfg.Module)
	hash := configHash(&cfg, sum)
	if !r.changed(cfg.Name, hash) {
		return nil, nil
	}
	w, err := r.reserve(cfg.Name)
	if err != nil {
		return nil, err
	}
	return r.stageOn(ctx, w, cfg, sum, hash)
}

// changed reports whether worker name's current version was deployed from a Config other
// than the one summarized by hash (or there is none).
func (r *Registry) changed(name string, hash [32]byte) bool {
	if w := r.Get(name); w != nil {
		if v := w.cur.Load(); v != nil && v.cfgHash == hash {
			return false
		}
	}
	return true
}

// newWorker returns a worker without a version; r.mu is held.
func (r *Registry) newWorker(name string) *Worker {
	w := &Worker{name: name, reg: r, namespaces: map[string]*durable.Namespace{}}
	w.ws.w = w
	w.dep.ready = make(chan struct{})
	w.mem = r.memory.share(w.trimIdle)
	return w
}

// configHash summarizes a Config for Ensure; sum is the module's SHA-256.
func configHash(cfg *Config, sum [32]byte) [32]byte {
	h := sha256.New()
	h.Write(sum[:])
	fmt.Fprintf(h, "\x00%v\x00%v\x00%v\x00%q\x00%v", sortedPairs(cfg.Env), sortedPairs(cfg.KV), cfg.Limits, cfg.Fetch.Allow, len(cfg.Durable))
	if len(cfg.Services) > 0 {
		fmt.Fprintf(h, "\x00services%v", sortedPairs(cfg.Services))
	}
	if len(cfg.Buckets) > 0 {
		fmt.Fprintf(h, "\x00buckets%v", sortedPairs(cfg.Buckets))
		for _, k := range slices.Sorted(maps.Keys(cfg.BucketStores)) {
			key := fmt.Sprintf("%p", cfg.BucketStores[k])
			if c, ok := cfg.BucketStores[k].(interface{ ConfigKey() string }); ok {
				key = c.ConfigKey()
			}
			fmt.Fprintf(h, "\x00%s=%s", k, key)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Durable)) {
		fmt.Fprintf(h, "\x00%s=%+v", k, cfg.Durable[k])
	}
	fmt.Fprintf(h, "\x00%v\x00%+v", sortedPairs(cfg.Queues), cfg.Consumers)
	for _, c := range cfg.Containers {
		fmt.Fprintf(h, "\x00container%+v%v", c, sortedPairs(c.Env))
	}
	if cfg.AI != nil {
		fmt.Fprintf(h, "\x00ai%s=%s", cfg.AI.Name, cfg.AI.Key)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// Remove stops routing to the worker and releases it once its requests are done.
func (r *Registry) Remove(ctx context.Context, name string) error {
	r.mu.Lock()
	w := r.workers[name]
	delete(r.workers, name)
	r.mu.Unlock()
	if w == nil {
		return nil
	}
	w.dep.settle(errNotDeployed)
	r.setContainers(name, nil)
	return w.close(ctx)
}

// Close releases every worker, waiting for requests in flight until ctx ends.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		close(r.stop)
	}
	r.closed = true
	ws := slices.Collect(maps.Values(r.workers))
	r.workers = map[string]*Worker{}
	r.mu.Unlock()
	<-r.done
	var errs []error
	for _, w := range ws {
		w.dep.settle(errNotDeployed)
		errs = append(errs, w.close(ctx))
	}
	if r.fetch != nil {
		errs = append(errs, r.fetch.Close())
	}
	return errors.Join(errs...)
}

// Worker is a deployed worker: a stable handle whose current version changes on deploy.
type Worker struct {
	name     string
	reg      *Registry
	mem      *memShare // the worker's account under Services.MemoryLimit
	deployMu sync.Mutex
	cur      atomicVersion
	stats    workerStats // invocation counters for metrics (stats.go)
	dep      deployState // versions being staged, the first version's arrival (deploy.go)
	ws       wsHub       // WebSockets held for Durable Objects (websocket_hub.go)
	qc       consumerSet // running queue consumers (queues.go)

	nsMu       sync.Mutex
	namespaces map[string]*durable.Namespace // by storage name
}

// trimIdle closes the idle pooled instances of the worker's current version (memory is
// short).
func (w *Worker) trimIdle() {
	if v := w.cur.Load(); v != nil {
		v.trim(time.Time{})
	}
}

// Name returns the worker's name.
func (w *Worker) Name() string { return w.name }

// Version describes the current version, ok false when none is deployed.
func (w *Worker) Version() (VersionInfo, bool) {
	v := w.cur.Load()
	if v == nil {
		return VersionInfo{}, false
	}
	return v.info(), true
}

// VersionInfo describes a deployed version.
type VersionInfo struct {
	// Worker is the worker's name.
	Worker string `json:"worker"`
	// ID is the first 12 hex digits of the module's SHA-256.
	ID string `json:"version"`
	// Deployed is when the version was deployed.
	Deployed time.Time `json:"deployed"`
	// Compile is how long compiling (or loading from the cache) took.
	Compile time.Duration `json:"compile_ns"`
	// Instantiate is how long creating the first instance took.
	Instantiate time.Duration `json:"instantiate_ns"`
	// Instances counts the version's pooled instances.
	Instances int `json:"instances"`
}

// namespace returns the worker's Durable Object namespace name (created on first use).
func (w *Worker) namespace(ctx context.Context, name string) (*durable.Namespace, error) {
	w.nsMu.Lock()
	defer w.nsMu.Unlock()
	if ns := w.namespaces[name]; ns != nil {
		return ns, nil
	}
	svc := &w.reg.svc
	if svc.Durable == nil {
		return nil, errors.New("worker: no Durable Object storage configured")
	}
	ns, err := durable.New(ctx, durable.Options{
		Name:        name,
		Store:       svc.Durable,
		Placement:   svc.Placement,
		IdleTimeout: svc.ObjectIdleTimeout,
		MaxLive:     svc.MaxLiveObjects,
		OnAlarm: func(ctx context.Context, t *durable.Turn, retries int) error {
			return w.runAlarm(ctx, name, t, retries)
		},
		OnEvict: evictActor,
		Logger:  svc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("worker %s: durable object namespace %s: %w", w.name, name, err)
	}
	w.namespaces[name] = ns
	if svc.Router != nil {
		svc.Router.Handle(name, w.objectHandler(name))
	}
	return ns, nil
}

func (w *Worker) close(ctx context.Context) error {
	var errs []error
	w.stopConsumers()
	w.ws.close()
	w.nsMu.Lock()
	for name, ns := range w.namespaces {
		if r := w.reg.svc.Router; r != nil {
			r.Handle(name, nil)
		}
		errs = append(errs, ns.Close(ctx))
		delete(w.namespaces, name)
	}
	w.nsMu.Unlock()
	if v := w.cur.Swap(nil); v != nil {
		v.retire()
	}
	return errors.Join(errs...)
}

// acquireCurrent takes a ref on the worker's current version, starting from v, a version
// just loaded from w.cur. A deploy between that load and the ref swaps the version and
// retires the loaded one, which closes if it had no refs: the ref is then taken on the version
// that replaced it, so that a deploy never fails a request. It returns nil when there is no
// version to serve (the worker was removed).
func (w *Worker) acquireCurrent(v *version) *version {
	for v != nil {
		if v.acquire() {
			return v
		}
		next := w.cur.Load()
		if next == v {
			return nil
		}
		v = next
	}
	return nil
}
