// Package wasm is Verge's only importer of the wazero WebAssembly runtime. It compiles worker
// modules (with an on-disk compilation cache), instantiates them as WASI reactors (calling
// _initialize once), wires the "verge" host module to a per-invocation Host, and lets another
// goroutine interrupt a running invocation. Modules are instrumented (see instrument) so that
// running guest code reaches Go code periodically: wazero's compiled code is not preemptible,
// and a guest that never left it would freeze the Go scheduler and garbage collector.
package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// PageSize is the WebAssembly memory page size.
const PageSize = 64 << 10

// Host serves the host operations of one invocation (docs/workers-abi.md).
type Host interface {
	// Call serves one host operation. arg aliases guest memory and is valid only during the
	// call; result must stay valid until the next Call.
	Call(op uint32, arg []byte) (status uint32, result []byte)
	// Yield is the running guest's periodic safe point (at least every FuelQuantum loop
	// iterations of an instrumented module): it enforces the invocation's limits against
	// the clock by calling Interrupt, which then stops the guest at once. It must be cheap.
	Yield()
}

// Config configures a Runtime.
type Config struct {
	// CacheDir keeps compiled machine code on disk so that a module compiled once (in this
	// or an earlier process) is loaded instead of compiled again. Empty means an in-memory
	// cache only.
	CacheDir string
	// MemoryLimit caps each instance's linear memory in bytes, rounded down to whole pages.
	// Zero means the WebAssembly maximum (4 GiB).
	MemoryLimit int64
	// CompileWorkers is how many goroutines compile a module's functions to machine code
	// in parallel. Zero means GOMAXPROCS; 1 compiles on the caller's goroutine only.
	CompileWorkers int
}

var (
	cacheMu sync.Mutex
	caches  = map[string]wazero.CompilationCache{}
)

// cacheFor returns the process-wide compilation cache for dir, so runtimes share it.
func cacheFor(dir string) (wazero.CompilationCache, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := caches[dir]; ok {
		return c, nil
	}
	var c wazero.CompilationCache
	if dir == "" {
		c = wazero.NewCompilationCache()
	} else {
		var err error
		if c, err = wazero.NewCompilationCacheWithDir(dir); err != nil {
			return nil, fmt.Errorf("wasm: compilation cache %s: %w", dir, err)
		}
	}
	caches[dir] = c
	return c, nil
}

// Runtime compiles and instantiates modules under one memory limit. Runtimes with the same
// configuration share one wazero runtime and its compiled modules (see shared.go): compiling
// a module already compiled in the process costs a map lookup.
type Runtime struct {
	cfg  Config
	rt   *sharedRuntime // for instrumented modules: no termination checks of its own
	mu   sync.Mutex
	safe *sharedRuntime  // for modules instrument refuses: the runtime's own checks; lazily
	mods []*sharedModule // compiled through this runtime, released by Close
}

// NewRuntime returns a runtime with WASI preview 1 and the verge host module.
func NewRuntime(ctx context.Context, cfg Config) (*Runtime, error) {
	rt, err := sharedFor(ctx, cfg, false)
	if err != nil {
		return nil, err
	}
	return &Runtime{cfg: cfg, rt: rt}, nil
}

func newWazero(ctx context.Context, cfg Config, ensureTermination bool) (wazero.Runtime, error) {
	cache, err := cacheFor(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(ensureTermination)
	if cfg.MemoryLimit > 0 {
		rc = rc.WithMemoryLimitPages(limitPages(cfg.MemoryLimit))
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: wasi: %w", err)
	}
	_, err = rt.NewHostModuleBuilder("verge").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostCall),
			[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32},
			[]api.ValueType{api.ValueTypeI64}).
		WithParameterNames("op", "arg_ptr", "arg_len", "out_ptr", "out_cap").
		Export("call").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostResult), []api.ValueType{api.ValueTypeI32}, nil).
		WithParameterNames("dst_ptr").
		Export("result").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostYield), nil, []api.ValueType{api.ValueTypeI32}).
		Export(YieldName).
		Instantiate(ctx)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("wasm: host module: %w", err)
	}
	return rt, nil
}

// limitPages converts a memory limit in bytes to whole pages, at least one.
func limitPages(limit int64) uint32 {
	return max(uint32(min(limit/PageSize, 65536)), 1)
}

// Close releases the modules compiled through the runtime. Instances made from them must be
// closed first (the wazero runtime is shared: it does not close them).
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	mods := r.mods
	r.mods = nil
	r.mu.Unlock()
	for _, m := range mods {
		m.release()
	}
	return nil
}

// Module is a compiled worker module.
type Module struct {
	rt           wazero.Runtime
	cm           wazero.CompiledModule
	instrumented bool
	shared       *sharedModule
	owner        *Runtime
}

// Compile compiles (or loads from the cache) a module and checks that it exports what the ABI
// requires: memory and verge_handle(i32) -> i32. The module is instrumented for cheap
// interruption (see instrument) when possible.
func (r *Runtime) Compile(ctx context.Context, bin []byte) (*Module, error) {
	return r.CompileSum(ctx, bin, sha256.Sum256(bin))
}

// CompileSum is Compile for a caller that knows the module's SHA-256, sum: it keys the
// modules compiled in the process and the cache of instrumented modules (instrumentCached).
func (r *Runtime) CompileSum(ctx context.Context, bin []byte, sum [32]byte) (*Module, error) {
	if err := checkSizes(bin); err != nil {
		return nil, err
	}
	if sm := r.rt.lookup(sum); sm != nil {
		return r.adopt(r.rt, sm), nil
	}
	r.mu.Lock()
	safe := r.safe
	r.mu.Unlock()
	if safe != nil {
		if sm := safe.lookup(sum); sm != nil {
			return r.adopt(safe, sm), nil
		}
	}
	shared := r.rt
	code, err := instrumentCached(r.cfg.CacheDir, bin, sum)
	if errors.Is(err, errUninstrumentable) {
		r.mu.Lock()
		if r.safe == nil {
			r.safe, err = sharedFor(ctx, r.cfg, true)
		}
		shared = r.safe
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		code = bin
	} else if err != nil {
		return nil, err
	}
	workers := r.cfg.CompileWorkers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	cm, err := shared.rt.CompileModule(experimental.WithCompilationWorkers(ctx, workers), code)
	if err != nil {
		return nil, fmt.Errorf("wasm: compile: %w", err)
	}
	fns := cm.ExportedFunctions()
	h, ok := fns["verge_handle"]
	if !ok {
		cm.Close(ctx)
		return nil, errors.New("wasm: module does not export verge_handle (is it built with the verge SDK and -buildmode=c-shared?)")
	}
	if p, res := h.ParamTypes(), h.ResultTypes(); len(p) != 1 || p[0] != api.ValueTypeI32 || len(res) != 1 || res[0] != api.ValueTypeI32 {
		cm.Close(ctx)
		return nil, errors.New("wasm: verge_handle must have type (i32) -> i32")
	}
	if len(cm.ExportedMemories()) == 0 {
		cm.Close(ctx)
		return nil, errors.New("wasm: module does not export its memory")
	}
	return r.adopt(shared, shared.add(sum, cm, shared != r.rt)), nil
}

// adopt returns the Module of sm (on which a ref is held) and records it for Close.
func (r *Runtime) adopt(shared *sharedRuntime, sm *sharedModule) *Module {
	r.mu.Lock()
	r.mods = append(r.mods, sm)
	r.mu.Unlock()
	return &Module{rt: shared.rt, cm: sm.cm, instrumented: !sm.safe, shared: sm, owner: r}
}

// Instrumented reports whether the module was instrumented for interruption (otherwise the
// slower checks of the runtime itself stop it).
func (m *Module) Instrumented() bool { return m.instrumented }

// Close releases the compiled code (Runtime.Close releases it as well); instances made from
// it must be closed first.
func (m *Module) Close(ctx context.Context) error {
	r := m.owner
	r.mu.Lock()
	i := slices.Index(r.mods, m.shared)
	if i >= 0 {
		r.mods = slices.Delete(r.mods, i, i+1)
	}
	r.mu.Unlock()
	if i >= 0 {
		m.shared.release()
	}
	return nil
}

// InstanceConfig configures one instance.
type InstanceConfig struct {
	// Stdout and Stderr receive the guest's output. Nil discards it.
	Stdout, Stderr io.Writer
	// Args are the guest's command-line arguments. Nil means ["worker"].
	Args []string
	// Memory is charged for the instance's linear memory. Nil means no accounting.
	Memory MemoryAccount
	// Sleep implements the guest's sleeps (WASI poll_oneoff on clocks). Nil means a plain
	// sleep. The runtime cannot interrupt a sleep, so a Sleep that returns early when the
	// instance is interrupted keeps sleeping guests within their limits.
	Sleep func(ns int64)
}

// Instance is one instantiated module: its own memory and Go runtime. It runs one
// invocation at a time.
type Instance struct {
	mod  api.Module
	mem  *linearMemory
	fuel api.MutableGlobal // nil when the module is not instrumented
	// stopped is the exit code given to Interrupt, 0 before; the guest's next yield traps.
	stopped atomic.Uint32
	// lost is the exit code given to Abandon, 0 before: no host call returns to the guest.
	lost    atomic.Uint32
	handle  api.Function
	call    callCtx
	pending []byte
	stack   [1]uint64
	// depth counts the Handle calls in progress: more than one while an invocation runs
	// nested inside another's host call (re-entrant verge_handle); nested holds one
	// verge_handle function per nesting level beyond the first (wazero's function values
	// keep their own call stack and cannot be re-entered).
	depth  int
	nested []api.Function
	abi    uint32 // verge_abi_version's result
}

// callCtx carries the invocation's Host to the host functions without an allocation. During
// Handle it hides the caller's cancellation from wazero (which would start a watcher
// goroutine per call): the caller interrupts the instance itself (Interrupt).
type callCtx struct {
	context.Context
	in    *Instance
	host  Host
	quiet bool
}

func (c *callCtx) Done() <-chan struct{} {
	if c.quiet {
		return nil
	}
	return c.Context.Done()
}

func (c *callCtx) Err() error {
	if c.quiet {
		return nil
	}
	return c.Context.Err()
}

func (c *callCtx) Deadline() (time.Time, bool) {
	if c.quiet {
		return time.Time{}, false
	}
	return c.Context.Deadline()
}

type ctxKey struct{}

func (c *callCtx) Value(k any) any {
	if k == (ctxKey{}) {
		return c
	}
	return c.Context.Value(k)
}

// Instantiate creates an instance and runs its _initialize export (the Go runtime's and
// packages' initialization), bounded by ctx.
func (m *Module) Instantiate(ctx context.Context, cfg InstanceConfig) (*Instance, error) {
	args := cfg.Args
	if args == nil {
		args = []string{"worker"}
	}
	mc := wazero.NewModuleConfig().
		WithName("").
		WithArgs(args...).
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	if cfg.Sleep != nil {
		mc = mc.WithNanosleep(cfg.Sleep)
	} else {
		mc = mc.WithSysNanosleep()
	}
	if cfg.Stdout != nil {
		mc = mc.WithStdout(cfg.Stdout)
	}
	if cfg.Stderr != nil {
		mc = mc.WithStderr(cfg.Stderr)
	}
	in := &Instance{mem: &linearMemory{acct: cfg.Memory}}
	in.call.in = in
	// wazero may watch this context after instantiation returns, so it is not the reusable
	// per-call context.
	ictx := &callCtx{Context: experimental.WithMemoryAllocator(ctx, in.mem), in: in}
	mod, err := m.rt.InstantiateModule(ictx, m.cm, mc)
	if err != nil {
		in.mem.release()
		return nil, fmt.Errorf("wasm: instantiate: %w", in.classify(err))
	}
	in.mod = mod
	// Should an instance be dropped without Close, its memory is still given back.
	runtime.AddCleanup(in, func(m *linearMemory) { m.release() }, in.mem)
	in.handle = mod.ExportedFunction("verge_handle")
	if m.instrumented {
		if in.fuel, _ = mod.ExportedGlobal(FuelGlobal).(api.MutableGlobal); in.fuel == nil {
			in.Close(context.Background())
			return nil, errors.New("wasm: instrumented module lacks its fuel global")
		}
	}
	if init := mod.ExportedFunction("_initialize"); init != nil {
		if _, err := in.callBounded(ctx, ictx, init); err != nil {
			in.Close(context.Background())
			return nil, fmt.Errorf("wasm: _initialize: %w", err)
		}
	}
	in.abi = 1
	if f := mod.ExportedFunction("verge_abi_version"); f != nil {
		if t := f.Definition(); len(t.ParamTypes()) != 0 || len(t.ResultTypes()) != 1 || t.ResultTypes()[0] != api.ValueTypeI32 {
			in.Close(context.Background())
			return nil, errors.New("wasm: verge_abi_version must have type () -> i32")
		}
		res, err := in.callBounded(ctx, ictx, f)
		if err != nil {
			in.Close(context.Background())
			return nil, fmt.Errorf("wasm: verge_abi_version: %w", err)
		}
		in.abi = uint32(res[0])
	}
	return in, nil
}

// callBounded calls an export of the guest outside an invocation (initialization), stopping
// it when ctx ends.
func (in *Instance) callBounded(ctx context.Context, ictx *callCtx, f api.Function) ([]uint64, error) {
	stop := context.AfterFunc(ctx, func() { in.Interrupt(ExitDeadlineExceeded) })
	res, err := f.Call(ictx)
	if !stop() && err == nil {
		// The deadline passed as the call returned: the interrupt is on its way and would
		// stop the instance's first invocation instead.
		err = sys.NewExitError(ExitDeadlineExceeded)
	}
	if err != nil {
		return nil, in.classify(err)
	}
	return res, nil
}

// ABIVersion is what the guest's verge_abi_version export returned when the instance was
// created, 1 when it has none (docs/workers-abi.md).
func (in *Instance) ABIVersion() uint32 { return in.abi }

// Handle calls verge_handle(kind) with host serving the host operations. ctx is passed to
// nothing that blocks: to bound the call, Interrupt the instance from another goroutine (a
// timer). An error means the instance is unusable (closed, trapped or exited) and must be
// discarded.
//
// Handle may be called again from inside a host operation of a running invocation (from
// Host.Call, on the same goroutine): the nested invocation runs on top of the waiting one,
// with its own Host, and the waiting one's Host and pending result are restored when it
// returns.
func (in *Instance) Handle(ctx context.Context, kind uint32, host Host) (uint32, error) {
	if in.depth > 0 {
		return in.handleNested(ctx, kind, host)
	}
	in.depth = 1
	in.call.Context, in.call.host, in.call.quiet = ctx, host, true
	in.stack[0] = uint64(kind)
	err := in.handle.CallWithStack(&in.call, in.stack[:])
	in.call.Context, in.call.host, in.pending = nil, nil, nil
	in.depth = 0
	if err != nil {
		return 0, in.classify(err)
	}
	return uint32(in.stack[0]), nil
}

// handleNested is Handle inside another invocation's host call.
func (in *Instance) handleNested(ctx context.Context, kind uint32, host Host) (uint32, error) {
	level := in.depth - 1
	for len(in.nested) <= level {
		in.nested = append(in.nested, in.mod.ExportedFunction("verge_handle"))
	}
	outerCtx, outerHost, outerPending := in.call.Context, in.call.host, in.pending
	in.depth++
	in.call.Context, in.call.host, in.pending = ctx, host, nil
	stack := [1]uint64{uint64(kind)}
	err := in.nested[level].CallWithStack(&in.call, stack[:])
	in.depth--
	in.call.Context, in.call.host, in.pending = outerCtx, outerHost, outerPending
	if err != nil {
		return 0, in.classify(err)
	}
	return uint32(stack[0]), nil
}

// Depth reports how many invocations are in progress on the instance (nested ones count).
func (in *Instance) Depth() int { return in.depth }

// Interrupt stops the running invocation from any goroutine with an *ExitError of code
// (nonzero): an instrumented instance exits at its next loop iteration (its fuel is zeroed
// so that it yields there; should the guest's own decrement overwrite that, within
// FuelQuantum iterations), another one is closed by the runtime's checks. Either way the
// invocation fails and the instance must be discarded. The first code given wins.
func (in *Instance) Interrupt(code uint32) {
	if in.fuel != nil {
		in.stopped.CompareAndSwap(0, code)
		in.fuel.Set(0)
		return
	}
	_ = in.mod.CloseWithExitCode(context.Background(), code)
}

// Abandon marks the instance lost with code: an invocation waiting in a host call fails
// with an *ExitError of code when the call returns, without running guest code again, and a
// running one stops as with Interrupt. Used when an invocation nested in another one failed
// and left the guest's stacks undefined.
func (in *Instance) Abandon(code uint32) {
	in.lost.CompareAndSwap(0, code)
	in.Interrupt(code)
}

// Close releases the instance and gives its memory back. It must not run while the
// instance runs (an interrupted invocation must have returned).
func (in *Instance) Close(ctx context.Context) error {
	err := in.mod.Close(ctx)
	in.mem.release()
	return err
}

// MemorySize returns the instance's current linear memory size in bytes.
func (in *Instance) MemorySize() uint32 { return in.mod.Memory().Size() }

// ExitError is an invocation that ended by the guest exiting (a Go panic or fatal error exits
// with code 2) or by Interrupt (with the code given there).
type ExitError struct {
	Code uint32
}

func (e *ExitError) Error() string { return fmt.Sprintf("wasm: guest exited with code %d", e.Code) }

// Exit codes the runtime itself uses for interrupts by context.
const (
	ExitCanceled         = sys.ExitCodeContextCanceled
	ExitDeadlineExceeded = sys.ExitCodeDeadlineExceeded
)

// ErrMemoryDenied is an invocation or instantiation that failed after its MemoryAccount
// refused to let the instance's memory grow.
var ErrMemoryDenied = errors.New("wasm: memory growth refused by the memory account")

func (in *Instance) classify(err error) error {
	if in.mem.denied.Load() {
		return fmt.Errorf("%w (%v)", ErrMemoryDenied, err)
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitCode()}
	}
	return err
}

func hostCall(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(ctxKey{}).(*callCtx)
	op, argPtr, argLen := uint32(stack[0]), uint32(stack[1]), uint32(stack[2])
	outPtr, outCap := uint32(stack[3]), uint32(stack[4])
	mem := mod.Memory()
	arg, ok := mem.Read(argPtr, argLen)
	if !ok {
		panic(fmt.Errorf("verge.call: argument [%d, +%d) out of memory bounds", argPtr, argLen))
	}
	var status uint32
	var res []byte
	if c == nil || c.host == nil {
		status, res = 4, []byte("host operations are not available during initialization")
	} else {
		status, res = c.host.Call(op, arg)
		if code := c.in.lost.Load(); code != 0 {
			// A nested invocation failed on top of this one: the guest's state is
			// undefined, so the waiting invocation ends here instead of resuming.
			panic(sys.NewExitError(code))
		}
	}
	if uint32(len(res)) <= outCap {
		if len(res) > 0 && !mem.Write(outPtr, res) {
			panic(fmt.Errorf("verge.call: result buffer [%d, +%d) out of memory bounds", outPtr, len(res)))
		}
		if c != nil {
			c.in.pending = nil
		}
	} else if c != nil {
		c.in.pending = res
	}
	stack[0] = uint64(status)<<32 | uint64(uint32(len(res)))
}

// hostYield is the "verge" "yield" function that instrument makes every loop call once its
// fuel is spent. Being Go code, it is where the scheduler can preempt the guest's goroutine
// and a garbage collection can stop it. It stops the guest when the instance was interrupted
// or is over its limits (the Host's, or while initializing the deadline of the context), and
// otherwise grants FuelQuantum more iterations.
func hostYield(ctx context.Context, _ api.Module, stack []uint64) {
	if c, _ := ctx.Value(ctxKey{}).(*callCtx); c != nil {
		in := c.in
		if in.stopped.Load() == 0 {
			if c.host != nil {
				c.host.Yield()
			} else if !c.quiet {
				// Initializing (the module's start function or _initialize): bounded by
				// the context. in.fuel is not known yet during the start function.
				err := c.Context.Err()
				if d, ok := c.Context.Deadline(); errors.Is(err, context.DeadlineExceeded) || ok && !time.Now().Before(d) {
					in.stopped.CompareAndSwap(0, ExitDeadlineExceeded)
				} else if err != nil {
					in.stopped.CompareAndSwap(0, ExitCanceled)
				}
			}
		}
		if code := in.stopped.Load(); code != 0 {
			panic(sys.NewExitError(code))
		}
	}
	stack[0] = FuelQuantum
}

func hostResult(ctx context.Context, mod api.Module, stack []uint64) {
	c, _ := ctx.Value(ctxKey{}).(*callCtx)
	if c == nil || c.in.pending == nil {
		return
	}
	if !mod.Memory().Write(uint32(stack[0]), c.in.pending) {
		panic(fmt.Errorf("verge.result: destination [%d, +%d) out of memory bounds", uint32(stack[0]), len(c.in.pending)))
	}
	c.in.pending = nil
}

var compilerOnce = sync.OnceValue(compilerCheck)

// CompilerAvailable returns nil when modules are compiled to machine code, and otherwise why
// not: the runtime then interprets them, tens of times slower, without failing. The reason
// is checked once per process.
func CompilerAvailable() error { return compilerOnce() }
