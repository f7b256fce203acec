package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/verge-edge/verge/internal/workerabi"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/containers"
	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/kv"
	"github.com/verge-edge/verge/queue"
	"github.com/verge-edge/verge/worker/internal/wasm"
)

type atomicVersion = atomic.Pointer[version]

// version is one deployment: compiled module, bindings and the instance pool.
type version struct {
	w       *Worker
	id      string
	cfgHash [32]byte
	limits  Limits
	egress  *egress // where subrequests may connect
	log     *slog.Logger
	rt      *wasm.Runtime
	mod     *wasm.Module
	env     []byte // encoded once for workerabi.OpEnv
	kv      map[string]kv.Namespace
	durable map[string]*doBinding
	buckets map[string]*bucketBinding // object storage (buckets.go)
	created time.Time
	compile time.Duration
	inst0   time.Duration

	// services maps service binding names to worker names (service.go).
	services map[string]string
	// containers are the container classes of the deploy (containers.go).
	containers []containers.ClassConfig
	// ai is the AI binding (ai.go); nil when none.
	ai *AIBinding
	// queues are the producer bindings; consumers the queues the worker consumes
	// (queues.go).
	queues    map[string]queue.Queue
	consumers []QueueConsumer

	slots chan struct{} // one per pooled instance allowed
	// poolMemory is the most linear memory an instance may hold and still be pooled: the
	// larger of half of Limits.Memory and twice the first instance's initial memory. One
	// that grew beyond it is closed after its request, giving its memory back.
	poolMemory int64
	// initMemory is the first instance's memory after initialization, what a new instance
	// reserves under the registry's memory limit before it is created.
	initMemory int64

	// objects are the instances hosting the version's live Durable Objects (objects.go).
	objects objectHosts

	mu      sync.Mutex
	idle    []*instance // least recently used first
	total   int
	refs    int // requests in flight, live actors
	retired bool
	closed  bool
}

// doBinding is a Durable Object binding resolved to its namespace.
type doBinding struct {
	class string
	ns    *durable.Namespace
}

// bindingOf returns the binding (its name and itself) through which the version reaches
// the Durable Object namespace stored as nsName; nil when none does.
func (v *version) bindingOf(nsName string) (string, *doBinding) {
	for name, b := range v.durable {
		if b.ns.Name() == nsName {
			return name, b
		}
	}
	return "", nil
}

// newVersion compiles cfg, whose module's SHA-256 is sum and whose configHash is hash, and
// creates its first instance.
func (w *Worker) newVersion(ctx context.Context, cfg Config, sum, hash [32]byte) (*version, error) {
	svc := &w.reg.svc
	cfg.Limits.setDefaults()
	v := &version{
		w: w, id: hex.EncodeToString(sum[:6]), cfgHash: hash, limits: cfg.Limits, created: time.Now(),
		kv: map[string]kv.Namespace{}, durable: map[string]*doBinding{}, services: maps.Clone(cfg.Services), containers: cfg.Containers, ai: cfg.AI,
		slots: make(chan struct{}, cfg.Limits.MaxInstances),
	}
	v.log = svc.Logger.With("worker", w.name, "version", v.id)
	eg, err := newEgress(cfg.Fetch, svc.Listeners)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", w.name, err)
	}
	v.egress = eg
	var e workerabi.Encoder
	keys := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.U32(uint32(len(keys)))
	for _, k := range keys {
		e.Str(k)
		e.Str(cfg.Env[k])
	}
	v.env = e.B
	for binding, name := range cfg.KV {
		if svc.KV == nil {
			return nil, fmt.Errorf("worker %s: kv binding %s: no KV storage configured", w.name, binding)
		}
		ns, err := svc.KV.Namespace(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("worker %s: kv binding %s: %w", w.name, binding, err)
		}
		v.kv[binding] = ns
	}
	v.queues = map[string]queue.Queue{}
	for binding, name := range cfg.Queues {
		q, err := w.reg.openQueue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("worker %s: queue binding %s: %w", w.name, binding, err)
		}
		v.queues[binding] = q
	}
	for _, c := range cfg.Consumers {
		for _, name := range []string{c.Queue, c.DeadLetterQueue} {
			if name == "" {
				continue
			}
			if _, err := w.reg.openQueue(ctx, name); err != nil {
				return nil, fmt.Errorf("worker %s: queue consumer of %s: %w", w.name, c.Queue, err)
			}
		}
	}
	v.consumers = slices.Clone(cfg.Consumers)
	for binding, d := range cfg.Durable {
		name := d.Namespace
		if name == "" {
			name = w.name + "-" + d.Class
		}
		ns, err := w.namespace(ctx, name)
		if err != nil {
			return nil, err
		}
		v.durable[binding] = &doBinding{class: d.Class, ns: ns}
	}
	if err := v.bindBuckets(ctx, &cfg); err != nil {
		return nil, err
	}
	rt, err := wasm.NewRuntime(ctx, wasm.Config{CacheDir: svc.CacheDir, MemoryLimit: cfg.Limits.Memory})
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", w.name, err)
	}
	start := time.Now()
	v.rt = rt
	if v.mod, err = rt.CompileSum(ctx, cfg.Module, sum); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("worker %s: %w", w.name, err)
	}
	v.compile = time.Since(start)
	// Compiling (or loading a compiled module from the cache) decodes the whole module:
	// tens of MB of short-lived garbage for a Go guest (82 MB of heap in use once the
	// chat example was deployed), which the Go runtime keeps as heap until later
	// collections, and its background scavenger returns only slowly. A deploy is rare:
	// collect now and give the freed memory back to the OS at once (RSS after start-up
	// with that worker: 129 MB before, 65 MB with this).
	debug.FreeOSMemory()
	// The first instance proves the module initializes and makes the first request warm.
	start = time.Now()
	in, err := v.newInstance(ctx)
	if err != nil {
		rt.Close(ctx)
		return nil, err
	}
	v.inst0 = time.Since(start)
	v.objects = objectHosts{v: v, per: objectsPer(in.in.ABIVersion(), cfg.Limits.ObjectsPerInstance)}
	v.initMemory = int64(in.in.MemorySize())
	v.poolMemory = max(cfg.Limits.Memory/2, 2*v.initMemory)
	v.total = 1
	v.idle = append(v.idle, in)
	return v, nil
}

func (v *version) info() VersionInfo {
	v.mu.Lock()
	n := v.total
	v.mu.Unlock()
	return VersionInfo{Worker: v.w.name, ID: v.id, Deployed: v.created, Compile: v.compile, Instantiate: v.inst0, Instances: n}
}

// instance is one WebAssembly instance with its reusable invocation state and timers.
type instance struct {
	v   *version
	in  *wasm.Instance
	inv invocation
	// cur is the running invocation: inv, or a nested one (interleave.go) while it runs.
	cur *invocation
	// gen numbers the instance's invocations (nested ones too), for state.
	gen uint32
	// nest lets invocations interleave on an actor's instance (interleave.go); nil for
	// pooled instances, which run one invocation at a time.
	nest *nester
	// host is the Durable Object host the instance is, nil for a pooled instance.
	host *objectHost
	// instrumented is true when the guest checks its limits itself (invocation.Yield).
	instrumented bool
	// wall fires at the wall time limit: it stops a guest blocked in a sleep or host call.
	// cpu fires when an uninstrumented guest may have spent its CPU time: it reads the
	// guest thread's clock and stops the guest or re-arms itself for the rest. An
	// instrumented guest checks its CPU time itself (invocation.Yield), as a timer cannot
	// fire while a garbage collection waits for the guest's goroutine; one blocked in a host
	// call uses no CPU time.
	cpu  *time.Timer
	wall *time.Timer
	// state is the invocation's generation (high 32 bits, one per run) and stateIdle,
	// stateRunning, or the exit code (exitCPU, exitWall) of the interrupt that stopped it
	// (low 32 bits). An interrupt takes effect only on the generation it was decided for:
	// one decided on a state read just before the invocation ended is dropped. (A timer
	// firing late, after the next invocation started, checks that one's deadline.)
	state atomic.Uint64
	// cpuClock and cpuDeadline let the cpu timer read the guest thread's CPU clock: the
	// clock's id, and the reading at which the budget is spent (0 while the guest waits in
	// a host call). Set for uninstrumented guests only.
	cpuClock    atomic.Int32
	cpuDeadline atomic.Int64
	// wallDeadline is when the current invocation reaches its wall time limit (monotonic
	// nanoseconds since clockBase): the wall timer stops an invocation only past it, so that
	// a timer of an earlier invocation firing late leaves the next one alone.
	wallDeadline atomic.Int64
	// poisoned is set when an interrupt raced with the end of an invocation: the instance
	// must not be reused.
	poisoned bool
	stop     chan struct{} // closed on interrupt, to end sleeps
	// idleSince is when the instance was last returned to the pool.
	idleSince time.Time
}

const (
	stateIdle    = 0
	stateRunning = 1
	stateMask    = 1<<32 - 1
)

// Exit codes used to interrupt instances.
const (
	exitCPU  = 0xfe000001
	exitWall = 0xfe000002
)

func (v *version) newInstance(ctx context.Context) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultInitTime)
	defer cancel()
	out := &logWriter{log: v.log, level: slog.LevelInfo, stream: "stdout"}
	errw := &logWriter{log: v.log, level: slog.LevelWarn, stream: "stderr"}
	i := &instance{v: v, stop: make(chan struct{}), instrumented: v.mod.Instrumented()}
	mem := v.w.mem
	res := mem.reserve(ctx, v.initMemory)
	if res == nil {
		return nil, &Error{Kind: MemoryLimit, Worker: v.w.name, Cause: mem.exhausted()}
	}
	in, err := v.mod.Instantiate(ctx, wasm.InstanceConfig{Stdout: out, Stderr: errw, Args: []string{v.w.name}, Sleep: i.sleep, Memory: res})
	res.done()
	if errors.Is(err, wasm.ErrMemoryDenied) {
		return nil, &Error{Kind: MemoryLimit, Worker: v.w.name, Cause: fmt.Errorf("initializing an instance: %w", mem.exhausted())}
	}
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", v.w.name, err)
	}
	i.in = in
	i.inv.inst = i
	i.cur = &i.inv
	i.cpu = time.AfterFunc(time.Hour, i.cpuTimerFired)
	i.cpu.Stop()
	i.wall = time.AfterFunc(time.Hour, i.wallTimerFired)
	i.wall.Stop()
	return i, nil
}

// interruptRun stops the invocation whose state was s with code, unless it already ended
// or was stopped. It reports whether it stopped it.
func (i *instance) interruptRun(s uint64, code uint32) bool {
	if s&stateMask != stateRunning || !i.state.CompareAndSwap(s, s&^stateMask|uint64(code)) {
		return false
	}
	close(i.stop)
	i.in.Interrupt(code)
	return true
}

// interrupt stops the current invocation with code.
func (i *instance) interrupt(code uint32) { i.interruptRun(i.state.Load(), code) }

// clockBase anchors the monotonic readings of instance.wallDeadline.
var clockBase = time.Now()

// wallTimerFired stops the current invocation if it is past its wall time limit. The timer
// may have been armed for an earlier invocation and fired as it ended: the state is read
// before the deadline (run stores the deadline first), so a later invocation's state is
// never judged by an earlier deadline.
func (i *instance) wallTimerFired() {
	s := i.state.Load()
	if int64(time.Since(clockBase)) < i.wallDeadline.Load() {
		return
	}
	i.interruptRun(s, exitWall)
}

// cpuTimerFired checks an uninstrumented guest's CPU time from the timer's goroutine.
func (i *instance) cpuTimerFired() {
	s := i.state.Load()
	if s&stateMask != stateRunning {
		return
	}
	d := i.cpuDeadline.Load()
	if d == 0 {
		return // in a host call; resume re-arms the timer
	}
	now, ok := readThreadClock(i.cpuClock.Load())
	if !ok || now >= d {
		i.interruptRun(s, exitCPU)
		return
	}
	i.cpu.Reset(time.Duration(d - now))
}

// sleep serves the guest's sleeps: they count as wall time, not CPU time, and end when the
// instance is interrupted.
func (i *instance) sleep(ns int64) {
	i.pause()
	t := time.NewTimer(time.Duration(ns))
	select {
	case <-t.C:
	case <-i.stop:
	}
	t.Stop()
	i.resume()
}

// pause ends a stretch of guest CPU time before a host operation that does work of its own
// (storage, subrequests, Durable Object calls, which may run other guests on this thread).
func (i *instance) pause() {
	i.cur.cpu.pause()
	if !i.instrumented {
		i.cpuDeadline.Store(0)
		i.cpu.Stop()
	}
}

// resume starts a stretch of guest CPU time, interrupting at once when the budget is spent.
func (i *instance) resume() {
	m := &i.cur.cpu
	if !m.resume() {
		i.interrupt(exitCPU)
		return
	}
	if !i.instrumented {
		i.cpuDeadline.Store(m.deadline())
		i.cpu.Reset(m.budget - m.counted)
	}
}

func (i *instance) close() {
	i.cpu.Stop()
	i.wall.Stop()
	i.in.Close(context.Background())
}

// acquire takes a ref on v (a request or an actor); false when v is closed.
func (v *version) acquire() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.refs++
	return true
}

func (v *version) release() {
	v.mu.Lock()
	v.refs--
	closeNow := v.retired && v.refs == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	if closeNow {
		v.shutdown()
	}
}

// retire marks v replaced: it closes when its last request or actor is done.
func (v *version) retire() {
	v.mu.Lock()
	v.retired = true
	closeNow := v.refs == 0 && !v.closed
	if closeNow {
		v.closed = true
	}
	v.mu.Unlock()
	if closeNow {
		v.shutdown()
	}
}

func (v *version) shutdown() {
	v.mu.Lock()
	idle := v.idle
	v.idle = nil
	v.mu.Unlock()
	for _, in := range idle {
		in.close()
	}
	v.rt.Close(context.Background())
	if v.ai != nil {
		v.ai.Client.Close() // its connections to the providers go with the version
	}
	v.log.Info("worker version released")
}

// get returns an idle instance or a new one, waiting while MaxInstances are busy.
func (v *version) get(ctx context.Context) (*instance, error) {
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, &Error{Kind: Overloaded, Worker: v.w.name, Cause: ctx.Err()}
	}
	v.mu.Lock()
	if n := len(v.idle); n > 0 {
		in := v.idle[n-1]
		v.idle = v.idle[:n-1]
		v.mu.Unlock()
		return in, nil
	}
	v.total++
	v.mu.Unlock()
	in, err := v.newInstance(ctx)
	if err != nil {
		v.mu.Lock()
		v.total--
		v.mu.Unlock()
		<-v.slots
		if we, ok := err.(*Error); ok {
			return nil, we
		}
		return nil, &Error{Kind: Crashed, Worker: v.w.name, Cause: err}
	}
	return in, nil
}

// put returns a healthy instance to the pool, or closes it when it holds more memory than
// a pooled instance may, or when other requests wait for memory and the worker holds more
// than its fair share of the registry's memory limit (memShare.shed).
func (v *version) put(in *instance) {
	if in.poisoned || int64(in.in.MemorySize()) > v.poolMemory || v.w.mem.shed() {
		v.discard(in)
		return
	}
	v.mu.Lock()
	if v.retired {
		v.total--
		v.mu.Unlock()
		in.close()
	} else {
		in.idleSince = in.inv.cpu.segWall // when its last invocation's last stretch began
		v.idle = append(v.idle, in)
		v.mu.Unlock()
	}
	<-v.slots
}

// trim closes the idle instances pooled before cutoff, keeping the most recently used one;
// a zero cutoff closes them all.
func (v *version) trim(cutoff time.Time) {
	v.mu.Lock()
	n := 0
	for n < len(v.idle) && (cutoff.IsZero() || v.idle[n].idleSince.Before(cutoff)) {
		n++
	}
	if !cutoff.IsZero() && n == len(v.idle) {
		n-- // keep the most recently used
	}
	if n <= 0 {
		v.mu.Unlock()
		return
	}
	old := slices.Clone(v.idle[:n])
	v.idle = slices.Delete(v.idle, 0, n)
	v.total -= n
	v.mu.Unlock()
	for _, in := range old {
		in.close()
	}
	v.log.Debug("idle worker instances closed", "closed", n)
}

// discard drops a failed instance.
func (v *version) discard(in *instance) {
	in.close()
	v.mu.Lock()
	v.total--
	v.mu.Unlock()
	<-v.slots
}

// logWriter turns guest output into log records, one per line, bounded to 4 KiB a line.
type logWriter struct {
	log    *slog.Logger
	level  slog.Level
	stream string
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := 0
		for i < len(p) && p[i] != '\n' {
			i++
		}
		w.buf = append(w.buf, p[:i]...)
		if i < len(p) || len(w.buf) >= 4096 {
			if len(w.buf) > 4096 {
				w.buf = w.buf[:4096]
			}
			w.log.Log(context.Background(), w.level, "worker output", "stream", w.stream, "line", string(w.buf))
			w.buf = w.buf[:0]
			if i < len(p) {
				i++
			}
		}
		p = p[i:]
	}
	return n, nil
}
