package wasm

import (
	"context"
	"encoding/binary"
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
