package wasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
)

// fakeHost answers the request-head operation and records the response.
type fakeHost struct {
	head []byte
	end  []byte
}

func (h *fakeHost) Call(op uint32, arg []byte) (uint32, []byte) {
	switch op {
	case 1:
		return 0, h.head
	case 5:
		h.end = append(h.end[:0], arg...)
		return 0, nil
	}
	return 4, []byte("unsupported")
}

func (h *fakeHost) Yield() {}

func str(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func TestHelloInstance(t *testing.T) {
	ctx := context.Background()
	bin := testwasm.Build(t, "examples/workers/hello")
	rt, err := NewRuntime(ctx, Config{CacheDir: t.TempDir(), MemoryLimit: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) })
	m, err := rt.Compile(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	in, err := m.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("instantiate: %v, memory %d KiB", time.Since(start), in.MemorySize()>>10)
	var head []byte
	head = str(head, "GET")
	head = str(head, "http://x/abc")
	head = str(head, "127.0.0.1")
	head = binary.LittleEndian.AppendUint32(head, 0)
	h := &fakeHost{head: head}
	for i := range 3 {
		start = time.Now()
		rc, err := in.Handle(ctx, 0, h)
		if err != nil || rc != 0 {
			t.Fatalf("handle %d: rc %d err %v", i, rc, err)
		}
		t.Logf("handle: %v", time.Since(start))
	}
	if !strings.Contains(string(h.end), "hello from /abc") {
		t.Fatalf("response end %q, want the greeting", h.end)
	}
}

func benchInstance(b *testing.B, rel string) *Instance {
	ctx := context.Background()
	rt, err := NewRuntime(ctx, Config{MemoryLimit: 128 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(ctx) })
	m, err := rt.Compile(ctx, testwasm.Build(b, rel))
	if err != nil {
		b.Fatal(err)
	}
	in, err := m.Instantiate(ctx, InstanceConfig{})
	if err != nil {
		b.Fatal(err)
	}
	return in
}

// BenchmarkHandleNop is the floor of an invocation: one call into a Go reactor that returns.
func BenchmarkHandleNop(b *testing.B) {
	in := benchInstance(b, "worker/internal/wasm/testdata/nop")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Handle(context.Background(), 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleHello is the hello example against a host that only answers the head.
func BenchmarkHandleHello(b *testing.B) {
	in := benchInstance(b, "examples/workers/hello")
	var head []byte
	head = str(head, "GET")
	head = str(head, "http://x/abc")
	head = str(head, "127.0.0.1")
	head = binary.LittleEndian.AppendUint32(head, 0)
	h := &fakeHost{head: head}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Handle(context.Background(), 0, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProbe(b *testing.B) {
	in := benchInstance(b, "worker/internal/wasm/testdata/probe")
	h := &fakeHost{head: []byte("x")}
	for _, kind := range []uint32{0, 1, 2, 3, 4, 5, 6} {
		b.Run(fmt.Sprint(kind), func(b *testing.B) {
			for b.Loop() {
				if _, err := in.Handle(context.Background(), kind, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
