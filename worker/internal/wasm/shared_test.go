package wasm

import (
	"context"
	"testing"
)

// TestSharedModules: runtimes of one configuration share compiled modules; a module released
// by every runtime is kept for reuse (the keepIdle most recent), and closed beyond.
func TestSharedModules(t *testing.T) {
	ctx := context.Background()
	cfg := Config{CacheDir: t.TempDir(), MemoryLimit: 1 << 20}
	newRT := func() *Runtime {
		rt, err := NewRuntime(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	bin := loopModule(false, false)
	a, b := newRT(), newRT()
	ma, err := a.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if ma.cm != mb.cm || ma.shared.refs != 2 {
		t.Fatalf("two runtimes of one configuration compiled twice (refs %d)", ma.shared.refs)
	}
	// Another configuration (memory limit) has its own runtime and module.
	other, _ := NewRuntime(ctx, Config{CacheDir: cfg.CacheDir, MemoryLimit: 2 << 20})
	mo, err := other.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if mo.cm == ma.cm {
		t.Fatal("runtimes with different memory limits share a module")
	}
	other.Close(ctx)
	a.Close(ctx)
	b.Close(ctx)
	// Released by all: kept, and compiling it again reuses it.
	c := newRT()
	mc, err := c.Compile(ctx, bin)
	if err != nil || mc.cm != ma.cm {
		t.Fatalf("released module not reused: %v", err)
	}
	if mc.Instrumented() != true {
		t.Fatal("reused module lost its instrumented flag")
	}
	in, err := mc.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		t.Fatalf("instantiating a reused module: %v", err)
	}
	in.Close(ctx)
	c.Close(ctx)
	// Beyond keepIdle released modules, the oldest is closed and forgotten.
	for _, v := range [][]byte{loopModule(false, true), refsModule()} {
		rt := newRT()
		if _, err := rt.Compile(ctx, v); err != nil {
			t.Fatal(err)
		}
		rt.Close(ctx)
	}
	sharedMu.Lock()
	_, kept := ma.shared.owner.mods[ma.shared.sum]
	sharedMu.Unlock()
	if kept {
		t.Fatalf("more than %d released modules kept", keepIdle)
	}
	// Module.Close releases once; Runtime.Close does not release it again.
	d := newRT()
	md, _ := d.Compile(ctx, bin)
	md.Close(ctx)
	d.Close(ctx)
	if md.shared.refs != 0 {
		t.Fatalf("refs after Module.Close and Runtime.Close = %d, want 0", md.shared.refs)
	}
}
