package wasm

import (
	"context"
	"errors"
	"testing"
	"time"
)

// loopModule is a module whose verge_handle loops forever; with simd, the loop is preceded
// by a v128.const (an instruction instrument refuses, forcing the runtime's own checks).
func loopModule(simd bool) []byte {
	sec := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	code := []byte{0x00} // no locals
	if simd {
		code = append(code, 0xfd, 0x0c)
		code = append(code, make([]byte, 16)...)
		code = append(code, 0x1a) // drop
	}
	code = append(code, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x41, 0x00, 0x0b) // loop br 0 end; i32.const 0; end
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, sec(1, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f)...)
	m = append(m, sec(3, 0x01, 0x00)...)
	m = append(m, sec(5, 0x01, 0x00, 0x01)...)
	exp := []byte{0x02, 12}
	exp = append(exp, "verge_handle"...)
	exp = append(exp, 0x00, 0x00, 6)
	exp = append(exp, "memory"...)
	exp = append(exp, 0x02, 0x00)
	m = append(m, sec(7, exp...)...)
	body := append([]byte{byte(len(code))}, code...)
	m = append(m, sec(10, append([]byte{0x01}, body...)...)...)
	return m
}

func TestInterruptLoop(t *testing.T) {
	for _, simd := range []bool{false, true} {
		ctx := context.Background()
		rt, err := NewRuntime(ctx, Config{MemoryLimit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close(ctx)
		m, err := rt.Compile(ctx, loopModule(simd))
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
		go func() {
			_, err := in.Handle(ctx, 0, nil)
			done <- err
		}()
		time.Sleep(30 * time.Millisecond)
		in.Interrupt(7)
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("simd=%v: interrupted loop returned no error", simd)
			}
			var ee *ExitError
			if !simd && errors.As(err, &ee) {
				t.Fatalf("instrumented loop: got exit error %v, want a trap", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("simd=%v: loop not interrupted", simd)
		}
	}
}

func TestInstrumentRejectsGarbage(t *testing.T) {
	if _, err := instrument([]byte("nope")); err == nil {
		t.Fatal("instrumented a non-module")
	}
	bad := loopModule(false)
	if _, err := instrument(bad[:len(bad)-3]); err == nil {
		t.Fatal("instrumented a truncated module")
	}
}

// FuzzInstrument checks that instrumenting arbitrary bytes never panics and that what it
// accepts still parses.
func FuzzInstrument(f *testing.F) {
	f.Add(loopModule(false))
	f.Add(loopModule(true))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := instrument(b)
		if err != nil {
			return
		}
		if _, err := instrument(out); err != nil && !errors.Is(err, errUninstrumentable) {
			t.Fatalf("instrumented output does not parse again: %v", err)
		}
	})
}
