package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// discard is a ResponseWriter that drops the response.
type discard struct{ status int }

func (d *discard) WriteHeader(r *message.Response) error { d.status = r.Status; return nil }
func (d *discard) Write(p []byte) (int, error)           { return len(p), nil }
func (d *discard) Finish(*message.Header) error          { return nil }

// BenchmarkServeHello is a warm hello-world request: one pooled instance, no network.
func BenchmarkServeHello(b *testing.B) {
	e := newEnv(b, b.TempDir(), worker.Services{})
	w := e.deploy(b, worker.Config{Name: "hello", Module: testwasm.Build(b, "examples/workers/hello")})
	req := &message.Request{Method: "GET", Target: "/bench", Authority: "example.com", Proto: message.HTTP11}
	wr := &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}
	out := &discard{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Serve(ctx, out, wr); err != nil || out.status != 200 {
			b.Fatal(err)
		}
	}
}

// BenchmarkCounterIncrement is the counter example's GET /counter/NAME on one object from
// concurrent requests: worker instance, Durable Object call, storage read and write, and a
// durable (fsync'ed, group-committed) commit before each response.
func BenchmarkCounterIncrement(b *testing.B) {
	e := newEnv(b, b.TempDir(), worker.Services{})
	cfg := counterConfig(b)
	cfg.Limits.MaxInstances = 64
	w := e.deploy(b, cfg)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		req := &message.Request{Method: "GET", Target: "/counter/bench", Authority: "example.com", Proto: message.HTTP11}
		wr := &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}
		out := &discard{}
		for pb.Next() {
			if _, err := w.Serve(context.Background(), out, wr); err != nil || out.status != 200 {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDeployCached is a deploy whose compiled code is in the on-disk cache (as after a
// restart, or a redeploy of a known module) followed by its first request.
func BenchmarkDeployCached(b *testing.B) {
	dir := b.TempDir()
	e := newEnv(b, dir, worker.Services{})
	mod := testwasm.Build(b, "examples/workers/hello")
	e.deploy(b, worker.Config{Name: "warmup", Module: mod})
	req := &message.Request{Method: "GET", Target: "/", Authority: "example.com", Proto: message.HTTP11}
	var first time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		info, err := e.reg.Deploy(context.Background(), worker.Config{Name: "hello", Module: mod, Env: map[string]string{"I": strings.Repeat("x", i%2)}})
		if err != nil {
			b.Fatal(err)
		}
		_ = info
		out := &discard{}
		if _, err := e.reg.Get("hello").Serve(context.Background(), out, &worker.Request{Message: req}); err != nil {
			b.Fatal(err)
		}
		first += time.Since(start)
	}
	b.ReportMetric(float64(first.Microseconds())/float64(b.N)/1000, "ms/deploy+first-request")
	_ = os.Remove(filepath.Join(dir, "unused"))
}
