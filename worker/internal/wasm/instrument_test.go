package wasm

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Hand-assembly helpers for test modules.

func leb(v uint32) []byte { return appendU32(nil, v) }

func sec(id byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	return append(append([]byte{id}, leb(uint32(len(b)))...), b...)
}

func vec(items ...[]byte) []byte {
	return append(leb(uint32(len(items))), bytes.Join(items, nil)...)
}

func name(s string) []byte { return appendName(nil, s) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func body(locals []byte, code ...byte) []byte {
	b := append(append([]byte(nil), locals...), code...)
	return append(leb(uint32(len(b))), b...)
}

var noLocals = []byte{0x00}

func header() []byte { return []byte("\x00asm\x01\x00\x00\x00") }

// loopModule is a module whose verge_handle loops forever; with simd, the loop is preceded
// by a v128.const (an instruction instrument refuses, forcing the runtime's own checks).
// With initLoop, its _initialize export loops forever too.
func loopModule(simd, initLoop bool) []byte {
	loop := []byte{0x03, 0x40, 0x0c, 0x00, 0x0b} // loop br 0 end
	var code []byte
	if simd {
		code = append(append([]byte{0xfd, 0x0c}, make([]byte, 16)...), 0x1a) // v128.const 0; drop
	}
	code = append(append(code, loop...), 0x41, 0x00, 0x0b) // ...; i32.const 0; end
	exports := [][]byte{cat(name("verge_handle"), []byte{0x00, 0x00}), cat(name("memory"), []byte{0x02, 0x00})}
	funcs := [][]byte{{0x00}}
	codes := [][]byte{body(noLocals, code...)}
	if initLoop {
		exports = append(exports, cat(name("_initialize"), []byte{0x00, 0x01}))
		funcs = append(funcs, []byte{0x01})
		codes = append(codes, body(noLocals, append(loop, 0x0b)...))
	}
	return cat(header(),
		sec(1, vec([]byte{0x60, 0x01, 0x7f, 0x01, 0x7f}, []byte{0x60, 0x00, 0x00})),
		sec(3, vec(funcs...)),
		sec(5, vec([]byte{0x00, 0x01})),
		sec(7, vec(exports...)),
		sec(10, vec(codes...)),
	)
}

// refsModule references its functions from everywhere a module can: an import before them,
// direct calls, exports, the start function, element segments in all eight encodings (used
// through call_indirect and table.init), a global initialized with ref.func, ref.func in
// code and the name section. verge_handle(k) returns k(k-1)/2 + 10k + 41 (mod 2^32),
// computing k(k-1)/2 in a loop of k iterations.
func refsModule() []byte {
	const (
		handle, double, start, add1, sum, sub1, triple, neg = 1, 2, 3, 4, 5, 6, 7, 8
	)
	ci := func(slot byte) []byte { // local.get 0; i32.const slot; call_indirect type 0 table 0; i32.add
		return []byte{0x20, 0x00, 0x41, slot, 0x11, 0x00, 0x00, 0x6a}
	}
	h := cat(
		[]byte{0x20, 0x00, 0x41, 0x00, 0x11, 0x00, 0x00}, // double(k) via slot 0
		ci(1), ci(2), ci(3), ci(4), // add1, sum, triple, neg
		[]byte{0x41, 0x05, 0x41, 0x00, 0x41, 0x01, 0xfc, 0x0c, 0x04, 0x00}, ci(5), // table.init seg 4 (sub1)
		[]byte{0x41, 0x06, 0x41, 0x00, 0x41, 0x01, 0xfc, 0x0c, 0x05, 0x00}, ci(6), // table.init seg 5 (double)
		[]byte{0x41, 0x07, 0x23, 0x01, 0x26, 0x00}, ci(7), // slot 7 = global 1 (add1)
		[]byte{0x41, 0x07, 0xd2, neg, 0x26, 0x00}, ci(7), // slot 7 = ref.func neg
		[]byte{0x20, 0x00, 0x10, double, 0x6a}, // + double(k)
		[]byte{0x23, 0x00, 0x6a},               // + global 0 (40, set by the start function)
		[]byte{0x10, 0x00, 0x6a},               // + sched_yield() (0)
		[]byte{0x0b},
	)
	expr := func(b ...byte) []byte { return append(b, 0x0b) }
	return cat(header(),
		sec(1, vec([]byte{0x60, 0x01, 0x7f, 0x01, 0x7f}, []byte{0x60, 0x00, 0x01, 0x7f}, []byte{0x60, 0x00, 0x00})),
		sec(2, vec(cat(name("wasi_snapshot_preview1"), name("sched_yield"), []byte{0x00, 0x01}))),
		sec(3, vec([]byte{0}, []byte{0}, []byte{2}, []byte{0}, []byte{0}, []byte{0}, []byte{0}, []byte{0})),
		sec(4, vec([]byte{0x70, 0x00, 0x08})),
		sec(5, vec([]byte{0x00, 0x01})),
		sec(6, vec(cat([]byte{0x7f, 0x01}, expr(0x41, 0x00)), cat([]byte{0x70, 0x00}, expr(0xd2, add1)))),
		sec(7, vec(cat(name("verge_handle"), []byte{0x00, handle}), cat(name("memory"), []byte{0x02, 0x00}),
			cat(name("double"), []byte{0x00, double}))),
		sec(8, leb(start)),
		sec(9, vec(
			cat([]byte{0x00}, expr(0x41, 0x00), vec([]byte{double}, []byte{add1})),
			cat([]byte{0x02, 0x00}, expr(0x41, 0x02), []byte{0x00}, vec([]byte{sum})),
			cat([]byte{0x04}, expr(0x41, 0x03), vec(expr(0xd2, triple))),
			cat([]byte{0x06, 0x00}, expr(0x41, 0x04), []byte{0x70}, vec(expr(0xd2, neg))),
			cat([]byte{0x01, 0x00}, vec([]byte{sub1})),
			cat([]byte{0x05, 0x70}, vec(expr(0xd2, double))),
			cat([]byte{0x03, 0x00}, vec([]byte{add1})),
			cat([]byte{0x07, 0x70}, vec(expr(0xd2, neg))),
		)),
		sec(10, vec(
			body(noLocals, h...),
			body(noLocals, 0x20, 0x00, 0x41, 0x01, 0x74, 0x0b), // double: k << 1
			body(noLocals, 0x41, 40, 0x24, 0x00, 0x0b),         // start: global 0 = 40
			body(noLocals, 0x20, 0x00, 0x41, 0x01, 0x6a, 0x0b), // add1
			body([]byte{0x01, 0x01, 0x7f}, // sum: acc = 0; while k != 0 { k--; acc += k }
				0x02, 0x40, 0x03, 0x40,
				0x20, 0x00, 0x45, 0x0d, 0x01,
				0x20, 0x00, 0x41, 0x7f, 0x6a, 0x22, 0x00, 0x20, 0x01, 0x6a, 0x21, 0x01,
				0x0c, 0x00, 0x0b, 0x0b, 0x20, 0x01, 0x0b),
			body(noLocals, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x0b), // sub1
			body(noLocals, 0x20, 0x00, 0x41, 0x03, 0x6c, 0x0b), // triple
			body(noLocals, 0x41, 0x00, 0x20, 0x00, 0x6b, 0x0b), // neg
		)),
		sec(0, name("name"), []byte{0x01}, leb(uint32(len(vec(cat(leb(handle), name("handle")), cat(leb(double), name("double")))))),
			vec(cat(leb(handle), name("handle")), cat(leb(double), name("double")))),
	)
}

func refsWant(k uint32) uint32 { return uint32(uint64(k)*uint64(k-1)/2) + 10*k + 41 }

// countingHost counts yields and interrupts the instance at the yield numbered stopAt.
type countingHost struct {
	in     *Instance
	yields int
	stopAt int
}

func (h *countingHost) Call(uint32, []byte) (uint32, []byte) { return 4, nil }

func (h *countingHost) Yield() {
	if h.yields++; h.yields == h.stopAt {
		h.in.Interrupt(9)
	}
}

func newTestRuntime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := NewRuntime(context.Background(), Config{MemoryLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func TestInstrumentRenumbersFunctions(t *testing.T) {
	ctx := context.Background()
	bin := refsModule()
	// The module as built is valid and computes refsWant without instrumentation.
	plain, err := newWazero(ctx, Config{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	pm, err := plain.Instantiate(ctx, bin)
	if err != nil {
		t.Fatalf("uninstrumented module: %v", err)
	}
	if got, err := pm.ExportedFunction("verge_handle").Call(ctx, 5); err != nil || uint32(got[0]) != refsWant(5) {
		t.Fatalf("uninstrumented: got %v, %v; want %d", got, err, refsWant(5))
	}

	m, err := newTestRuntime(t).Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Instrumented() {
		t.Fatal("module not instrumented")
	}
	in, err := m.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHost{in: in}
	for _, k := range []uint32{0, 1, 5, 1000, 3*FuelQuantum + 17} {
		h.yields = 0
		got, err := in.Handle(ctx, k, h)
		if err != nil || got != refsWant(k) {
			t.Fatalf("handle(%d): got %d, %v; want %d", k, got, err, refsWant(k))
		}
		t.Logf("handle(%d): %d yields", k, h.yields)
	}
	if got, err := in.mod.ExportedFunction("double").Call(ctx, 21); err != nil || got[0] != 42 {
		t.Fatalf("exported double(21): got %v, %v", got, err)
	}
	// The name section follows the functions.
	names := in.mod.ExportedFunction("verge_handle").Definition().DebugName()
	if names != ".handle" && names != "handle" {
		t.Errorf("verge_handle's debug name %q, want handle", names)
	}
}

func TestInstrumentRenumbersCode(t *testing.T) {
	// return_call, call and ref.func to a defined function move up; to an import they stay.
	code := []byte{0xd2, 0x01, 0x1a, 0x10, 0x00, 0x1a, 0x10, 0x01, 0x1a, 0x12, 0x01, 0x0b}
	bin := cat(header(),
		sec(1, vec([]byte{0x60, 0x00, 0x01, 0x7f})),
		sec(2, vec(cat(name("a"), name("b"), []byte{0x00, 0x00}))),
		sec(3, vec([]byte{0x00})),
		sec(10, vec(body(noLocals, code...))),
	)
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := body(noLocals, 0xd2, 0x02, 0x1a, 0x10, 0x00, 0x1a, 0x10, 0x02, 0x1a, 0x12, 0x02, 0x0b)
	if !bytes.Contains(out, sec(10, vec(want))) {
		t.Fatalf("instrumented module %x lacks code section %x", out, sec(10, vec(want)))
	}
	wantImport := sec(2, vec(cat(name("a"), name("b"), []byte{0x00, 0x00}), cat(name(YieldModule), name(YieldName), []byte{0x00, 0x01})))
	if !bytes.Contains(out, wantImport) {
		t.Fatalf("instrumented module %x lacks import section %x", out, wantImport)
	}
}

func TestFuel(t *testing.T) {
	ctx := context.Background()
	m, err := newTestRuntime(t).Compile(ctx, refsModule())
	if err != nil {
		t.Fatal(err)
	}
	in, err := m.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The loop runs k+1 times; it yields first when its fuel (initially 0) is spent, then
	// every FuelQuantum iterations.
	const k = 10 * FuelQuantum
	h := &countingHost{in: in}
	if _, err := in.Handle(ctx, k, h); err != nil {
		t.Fatal(err)
	}
	if want := 1 + k/FuelQuantum; h.yields != want {
		t.Fatalf("%d iterations: %d yields, want %d", k+1, h.yields, want)
	}
	left := int32(in.fuel.Get())
	if left <= 0 || left > FuelQuantum {
		t.Fatalf("fuel left %d, want in (0, %d]", left, FuelQuantum)
	}
	// A Yield that interrupts stops the guest there with the interrupt's code.
	h.yields, h.stopAt = 0, 3
	_, err = in.Handle(ctx, k, h)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 9 || h.yields != 3 {
		t.Fatalf("interrupt at the third yield: got %v after %d yields, want exit code 9 after 3", err, h.yields)
	}
}

func TestInterruptLoop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // the interrupting goroutine must get the P
	for _, simd := range []bool{false, true} {
		ctx := context.Background()
		m, err := newTestRuntime(t).Compile(ctx, loopModule(simd, false))
		if err != nil {
			t.Fatalf("simd=%v: %v", simd, err)
		}
		if m.Instrumented() == simd {
			t.Fatalf("simd=%v: instrumented=%v", simd, m.Instrumented())
		}
		in, err := m.Instantiate(ctx, InstanceConfig{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		var stopped atomic.Int64
		go func() {
			_, err := in.Handle(ctx, 0, &countingHost{})
			stopped.Store(time.Now().UnixNano())
			done <- err
		}()
		time.Sleep(30 * time.Millisecond)
		at := time.Now()
		in.Interrupt(7)
		select {
		case err := <-done:
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != 7 {
				t.Fatalf("simd=%v: interrupted loop returned %v, want exit code 7", simd, err)
			}
			t.Logf("simd=%v: stopped %v after Interrupt", simd, time.Unix(0, stopped.Load()).Sub(at))
		case <-time.After(5 * time.Second):
			t.Fatalf("simd=%v: loop not interrupted", simd)
		}
	}
}

// TestInitializeDeadline checks that a guest looping in _initialize is stopped by the
// context's deadline even when no other goroutine can run.
func TestInitializeDeadline(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	m, err := newTestRuntime(t).Compile(ctx, loopModule(false, true))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now() // before the deadline is set: a busy machine may pause us in between
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = m.Instantiate(ctx, InstanceConfig{})
	took := time.Since(start)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitDeadlineExceeded {
		t.Fatalf("got %v, want a deadline exit", err)
	}
	if took < 50*time.Millisecond || took > 20*time.Second { // the upper bound is a guard
		t.Fatalf("stopped after %v, want just after 50ms", took)
	}
}

func TestInstrumentRejectsGarbage(t *testing.T) {
	if _, err := instrument([]byte("nope")); err == nil {
		t.Fatal("instrumented a non-module")
	}
	bad := loopModule(false, false)
	if _, err := instrument(bad[:len(bad)-3]); err == nil {
		t.Fatal("instrumented a truncated module")
	}
	if _, err := instrument(loopModule(true, false)); !errors.Is(err, errUninstrumentable) {
		t.Fatalf("simd module: got %v, want errUninstrumentable", err)
	}
}

// BenchmarkLoop is a tight guest loop (the sum loop of refsModule) per iteration: the cost
// of the fuel check and the yields.
func BenchmarkLoop(b *testing.B) {
	ctx := context.Background()
	rt, err := NewRuntime(ctx, Config{MemoryLimit: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	m, err := rt.Compile(ctx, refsModule())
	if err != nil {
		b.Fatal(err)
	}
	in, err := m.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	h := &countingHost{}
	const k = 1 << 20
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Handle(ctx, k, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/k, "ns/iter")
}

// FuzzInstrument checks that instrumenting arbitrary bytes never panics, that what it
// accepts parses again, and that wazero accepts what it makes of valid modules.
func FuzzInstrument(f *testing.F) {
	f.Add(loopModule(false, false))
	f.Add(loopModule(true, true))
	f.Add(refsModule())
	rt, err := newWazero(context.Background(), Config{}, false)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rt.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := instrument(b)
		if err != nil {
			return
		}
		if _, err := instrument(out); err != nil && !errors.Is(err, errUninstrumentable) {
			t.Fatalf("instrumented output does not parse again: %v", err)
		}
		if checkSizes(b) != nil {
			return // Compile refuses it before wazero would allocate for the claimed sizes
		}
		if cm, err := rt.CompileModule(context.Background(), b); err == nil {
			cm.Close(context.Background())
			cm, err := rt.CompileModule(context.Background(), out)
			if err != nil {
				t.Fatalf("valid module invalid after instrumentation: %v", err)
			}
			cm.Close(context.Background())
		}
	})
}
