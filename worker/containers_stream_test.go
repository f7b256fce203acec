package worker_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/worker"
)

// patternBody is a request body of n bytes made as it is read (a repeating pattern), so
// that the test holds none of it.
type patternBody struct{ off, n int64 }

func (b *patternBody) Read(p []byte) (int, error) {
	if b.off >= b.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.n-b.off)]
	for i := range p {
		p[i] = byte((b.off + int64(i)) % 251)
	}
	b.off += int64(len(p))
	return len(p), nil
}

// patternDigest is the sha256 of patternBody's bytes from skip to n.
func patternDigest(skip, n int64) string {
	h := sha256.New()
	b := &patternBody{n: n}
	io.CopyN(io.Discard, b, skip)
	io.Copy(h, b)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestContainerStreamedRequestBody sends a request body through a worker, a Durable Object
// and its container (the process driver) while the host passes it on: 48 MiB (which the
// guests never copy: a copy through guest memory, at 16 MiB already, ran out of CPU time)
// arrive whole and in order with their Content-Length; a body the object read a part of
// arrives as its rest (chunked); a body the guest wraps goes as bytes as before.
func TestContainerStreamedRequestBody(t *testing.T) {
	w, _, _, _ := containerWorker(t)
	post := func(target string, n int64) string {
		t.Helper()
		req := &message.Request{Method: "POST", Target: target, Authority: "example.com", Proto: message.HTTP11,
			Body: &patternBody{n: n}, ContentLength: n}
		rec := &recorder{}
		if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
			t.Fatalf("POST %s: %v", target, err)
		}
		if rec.status != 200 {
			t.Fatalf("POST %s: %s", target, rec)
		}
		return rec.body.String()
	}
	const big = 48 << 20
	if got, want := post("/obj/C/s/sha256", big), fmt.Sprintf("%d %s length=%d\n", big, patternDigest(0, big), big); got != want {
		t.Fatalf("streamed body: %q, want %q", got, want)
	}
	if got, want := post("/obj/C/s/sha256?skip=10", 1<<20), fmt.Sprintf("%d %s length=-1\n", 1<<20-10, patternDigest(10, 1<<20)); got != want {
		t.Fatalf("the rest of a body read in part: %q, want %q", got, want)
	}
	if got, want := post("/obj/C/s/sha256?copy=1", 100<<10), fmt.Sprintf("%d %s length=%d\n", 100<<10, patternDigest(0, 100<<10), 100<<10); got != want {
		t.Fatalf("a body passed as bytes: %q, want %q", got, want)
	}
	// An empty body stays empty (no chunked body for a GET passed on).
	if got, want := post("/obj/C/s/sha256", 0), fmt.Sprintf("0 %s length=0\n", patternDigest(0, 0)); got != want {
		t.Fatalf("empty body: %q, want %q", got, want)
	}
}

// BenchmarkContainerFetchBody POSTs 1 MiB through a worker and its object to the
// container's /sha256, the host streaming the body both times (b.SetBytes: MB/s of body).
func BenchmarkContainerFetchBody(b *testing.B) {
	w, _, _, _ := containerWorker(b)
	const size = 1 << 20
	want := fmt.Sprintf("%d %s length=%d\n", size, patternDigest(0, size), size)
	body := &patternBody{n: size}
	req := &message.Request{Method: "POST", Target: "/obj/C/bench/sha256", Authority: "example.com", Proto: message.HTTP11}
	ctx := context.Background()
	run := func() {
		*body = patternBody{n: size}
		req.Body, req.ContentLength = body, size
		rec := &recorder{}
		if _, err := w.Serve(ctx, rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil || rec.body.String() != want {
			b.Fatalf("%v %s", err, rec)
		}
	}
	run() // starts the container
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// TestContainerPassedBodyThroughRouter: with a cluster's router between the worker and the
// object, a body passed on is read whole first (it travels in one message), at most 32 MiB,
// then streams from the object to its container as before.
func TestContainerPassedBodyThroughRouter(t *testing.T) {
	w, _, _, _ := containerWorkerRouted(t, &hopRouter{})
	post := func(n int64) *recorder {
		t.Helper()
		req := &message.Request{Method: "POST", Target: "/obj/C/r/sha256", Authority: "example.com", Proto: message.HTTP11,
			Body: &patternBody{n: n}, ContentLength: n}
		rec := &recorder{}
		if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
			t.Fatalf("POST of %d bytes: %v", n, err)
		}
		return rec
	}
	const n = 1 << 20
	if got, want := post(n).body.String(), fmt.Sprintf("%d %s length=%d\n", n, patternDigest(0, n), n); got != want {
		t.Fatalf("through the router: %q, want %q", got, want)
	}
	if rec := post(worker.MaxFetchBody + 1); rec.status != 502 || !strings.Contains(rec.body.String(), "exceeds") {
		t.Fatalf("over the limit through the router: %s", rec)
	}
}
