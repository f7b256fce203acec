package worker_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// BenchmarkContainerFetch is a request through a worker to a Durable Object that fetches
// from its running container (process driver; docs/performance.md, Containers): worker
// instance, object call, container subrequest over loopback, response streamed back.
func BenchmarkContainerFetch(b *testing.B) {
	w, _, _, _ := containerWorker(b)
	req := &message.Request{Method: "GET", Target: "/obj/C/bench/fetch", Authority: "example.com", Proto: message.HTTP11}
	wr := &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}
	out := &discard{}
	ctx := context.Background()
	if _, err := w.Serve(ctx, out, wr); err != nil || out.status != 200 { // starts the container
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Serve(ctx, out, wr); err != nil || out.status != 200 {
			b.Fatal(err)
		}
	}
}

// BenchmarkContainerDirect is the same container answering a keep-alive client directly:
// the baseline of BenchmarkContainerFetch.
func BenchmarkContainerDirect(b *testing.B) {
	w, m, _, _ := containerWorker(b)
	rec, err := serve(b, w, "GET", "/obj/C/bench/id", "")
	if err != nil {
		b.Fatal(err)
	}
	addr, release, err := m.Acquire(context.Background(), "ct", "C", rec.body.String())
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	c := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
