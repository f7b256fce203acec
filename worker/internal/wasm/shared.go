package wasm

import (
	"context"
	"sync"

	"github.com/tetratelabs/wazero"
)

// Runtimes of the same configuration share one wazero runtime, and the modules compiled in
// it are shared by sum (their binary's SHA-256) and reference counted: a version of a worker
// deployed again (the same module with other variables or limits, a rollback) reuses the
// compiled module instead of decoding, validating and loading it again, which costs about
// 30 ms for a 3 MB Go module even when its machine code is in the compilation cache.
// Modules no runtime holds any more are kept for reuse, the keepIdle most recently
// released, and closed beyond (their machine code is megabytes).

// keepIdle bounds the compiled modules kept after their last runtime released them.
const keepIdle = 2

// sharedKey is what a wazero runtime is configured with.
type sharedKey struct {
	cacheDir          string
	pages             uint32 // memory limit; 0 for none
	ensureTermination bool
}

// sharedRuntime is one wazero runtime and the modules compiled in it. Shared runtimes live
// as long as the process (one per distinct configuration).
type sharedRuntime struct {
	rt   wazero.Runtime
	mods map[[32]byte]*sharedModule // guarded by sharedMu
}

// sharedModule is one compiled module of a shared runtime.
type sharedModule struct {
	owner *sharedRuntime
	sum   [32]byte
	cm    wazero.CompiledModule
	safe  bool // compiled uninstrumented, in a runtime with termination checks
	refs  int  // Runtimes holding it; guarded by sharedMu
}

var (
	sharedMu   sync.Mutex
	runtimes   = map[sharedKey]*sharedRuntime{}
	idle       []*sharedModule // released modules, least recently released first
	sharedInit sync.Mutex      // serializes creating runtimes
)

// sharedFor returns the shared runtime of cfg, creating it on first use.
func sharedFor(ctx context.Context, cfg Config, ensureTermination bool) (*sharedRuntime, error) {
	key := sharedKey{cacheDir: cfg.CacheDir, ensureTermination: ensureTermination}
	if cfg.MemoryLimit > 0 {
		key.pages = limitPages(cfg.MemoryLimit)
	}
	sharedInit.Lock()
	defer sharedInit.Unlock()
	sharedMu.Lock()
	sr := runtimes[key]
	sharedMu.Unlock()
	if sr != nil {
		return sr, nil
	}
	rt, err := newWazero(context.WithoutCancel(ctx), cfg, ensureTermination)
	if err != nil {
		return nil, err
	}
	sr = &sharedRuntime{rt: rt, mods: map[[32]byte]*sharedModule{}}
	sharedMu.Lock()
	runtimes[key] = sr
	sharedMu.Unlock()
	return sr, nil
}

// lookup returns the module compiled from the binary of SHA-256 sum with a ref taken on it,
// or nil.
func (sr *sharedRuntime) lookup(sum [32]byte) *sharedModule {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	return sr.lookupLocked(sum)
}

func (sr *sharedRuntime) lookupLocked(sum [32]byte) *sharedModule {
	sm := sr.mods[sum]
	if sm == nil {
		return nil
	}
	if sm.refs == 0 {
		for i, m := range idle {
			if m == sm {
				idle = append(idle[:i:i], idle[i+1:]...)
				break
			}
		}
	}
	sm.refs++
	return sm
}

// add records a module just compiled, with a ref taken on it. When another one was compiled
// from the same binary meanwhile, that one is used and cm closed.
func (sr *sharedRuntime) add(sum [32]byte, cm wazero.CompiledModule, safe bool) *sharedModule {
	sharedMu.Lock()
	if sm := sr.lookupLocked(sum); sm != nil {
		sharedMu.Unlock()
		cm.Close(context.Background())
		return sm
	}
	sm := &sharedModule{owner: sr, sum: sum, cm: cm, safe: safe, refs: 1}
	sr.mods[sum] = sm
	sharedMu.Unlock()
	return sm
}

// release drops a ref; the last keeps the module among the idle ones, closing the least
// recently released beyond keepIdle.
func (sm *sharedModule) release() {
	sharedMu.Lock()
	sm.refs--
	var drop []*sharedModule
	if sm.refs == 0 {
		idle = append(idle, sm)
		for len(idle) > keepIdle {
			old := idle[0]
			idle = idle[1:]
			delete(old.owner.mods, old.sum)
			drop = append(drop, old)
		}
	}
	sharedMu.Unlock()
	for _, m := range drop {
		m.cm.Close(context.Background())
	}
}
