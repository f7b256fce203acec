package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/objstore"
	"github.com/verge-edge/verge/worker"
)

func filesEnv(t testing.TB) (*env, *worker.Worker, *objstore.Local) {
	t.Helper()
	dir := t.TempDir()
	objs, err := objstore.OpenLocal(dir + "/objects")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, dir, worker.Services{Objects: objs})
	w := e.deploy(t, worker.Config{
		Name:    "files",
		Module:  testwasm.Build(t, "examples/workers/files"),
		Buckets: map[string]string{"FILES": "files"},
		Limits:  worker.Limits{CPUTime: 10 * time.Second, WallTime: time.Minute},
	})
	return e, w, objs
}

func serveHeader(t testing.TB, w *worker.Worker, method, target, body string, hdr map[string]string) *recorder {
	t.Helper()
	req := &message.Request{Method: method, Target: target, Authority: "example.com", Proto: message.HTTP11}
	for k, v := range hdr {
		req.Header.Add(k, v)
	}
	if body != "" {
		req.Body = strings.NewReader(body)
		req.ContentLength = int64(len(body))
	}
	rec := &recorder{}
	if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"}); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return rec
}

// TestBucketBinding drives a bucket through the Go API: the host stores the request body,
// copies a large object to the response with its Content-Length, answers ranges, counts
// the operations, and a streamed put from the worker's own reader stores its bytes.
func TestBucketBinding(t *testing.T) {
	e, w, objs := filesEnv(t)
	big := bytes.Repeat([]byte("0123456789"), 20000) // 200,000 bytes: beyond the inline size
	rec := serveHeader(t, w, "PUT", "/files/big", string(big), map[string]string{"Content-Type": "application/x-big"})
	if rec.status != 201 {
		t.Fatalf("put: %s", rec)
	}
	rec = serveHeader(t, w, "GET", "/files/big", "", nil)
	if rec.status != 200 || !bytes.Equal(rec.body.Bytes(), big) || rec.length != int64(len(big)) || rec.header.Get("Content-Type") != "application/x-big" {
		t.Fatalf("get: %d, %d bytes, Content-Length %d, %v", rec.status, rec.body.Len(), rec.length, rec.header)
	}
	rec = serveHeader(t, w, "GET", "/files/big", "", map[string]string{"Range": "bytes=199995-"})
	if rec.status != 206 || rec.body.String() != "56789" || rec.length != 5 || rec.header.Get("Content-Range") != "bytes 199995-199999/200000" {
		t.Fatalf("range: %d %q %d %v", rec.status, rec.body.String(), rec.length, rec.header)
	}
	rec = serveHeader(t, w, "HEAD", "/files/big", "", nil)
	if rec.status != 200 || rec.body.Len() != 0 || rec.length != int64(len(big)) {
		t.Fatalf("head: %d, %d bytes, Content-Length %d", rec.status, rec.body.Len(), rec.length)
	}
	// A body the worker produces, handed over piece by piece (more than one piece).
	rec = serveHeader(t, w, "PUT", "/gen/gen?bytes=1000000", "", nil)
	if rec.status != 201 {
		t.Fatalf("gen: %s", rec)
	}
	b, _ := objs.Bucket(context.Background(), "files")
	res, err := objstore.Get(context.Background(), b, "gen", objstore.GetOptions{})
	if err != nil || res.Object == nil || res.Object.Size != 1000000 {
		t.Fatalf("generated object: %+v %v", res, err)
	}
	res.Body.Close()
	rec = serveHeader(t, w, "GET", "/sha256/gen", "", nil)
	if rec.status != 200 || rec.body.String() != res.Object.SHA256 {
		t.Fatalf("digest read in the worker: %s, stored %s", rec, res.Object.SHA256)
	}
	// A generator that fails after 600,000 bytes (three pieces handed over): the put is
	// aborted and the object that was there stays.
	rec = serveHeader(t, w, "PUT", "/gen/gen?bytes=2000000&fail=600000", "", nil)
	if rec.status != 500 || !strings.Contains(rec.body.String(), "the generator failed") {
		t.Fatalf("failing generator: %s", rec)
	}
	if o, _ := b.Head(context.Background(), "gen"); o == nil || o.Size != 1000000 {
		t.Fatalf("after an aborted put: %+v", o)
	}
	var st worker.BucketSample
	for _, s := range e.reg.BucketStats() {
		if s.Bucket == "files" {
			st = s
		}
	}
	if st.Ops["put"] != 3 || st.Ops["get"] != 4 || st.Errors != 1 || st.BytesIn < int64(len(big))+1000000 || st.BytesOut < int64(2*len(big)) {
		t.Fatalf("stats: %+v", st)
	}
}

// TestBucketBindingRefusals: a put whose checksum fails stores nothing, and a worker reaches
// no bucket its configuration does not bind.
func TestBucketBindingRefusals(t *testing.T) {
	_, w, _ := filesEnv(t)
	bad := sha256.Sum256([]byte("x"))
	rec := serveHeader(t, w, "PUT", "/files/k", "body", map[string]string{"X-Checksum-SHA256": hex.EncodeToString(bad[:])})
	if rec.status != 400 || !strings.Contains(rec.body.String(), "checksum") {
		t.Fatalf("bad checksum: %s", rec)
	}
	if rec := serveHeader(t, w, "GET", "/files/k", "", nil); rec.status != 404 {
		t.Fatalf("after a failed put: %s", rec)
	}
	// The same module with the binding under another name reaches nothing.
	dir := t.TempDir()
	objs, _ := objstore.OpenLocal(dir)
	e := newEnv(t, t.TempDir(), worker.Services{Objects: objs})
	other := e.deploy(t, worker.Config{Name: "other", Module: testwasm.Build(t, "examples/workers/files"), Buckets: map[string]string{"OTHER": "files"}})
	if rec := serveHeader(t, other, "GET", "/files/k", "", nil); rec.status != 500 || !strings.Contains(rec.body.String(), `no bucket bound as "FILES"`) {
		t.Fatalf("unbound bucket: %s", rec)
	}
	// Without object storage a bucket binding does not deploy.
	e2 := newEnv(t, t.TempDir(), worker.Services{})
	if _, err := e2.reg.Deploy(context.Background(), worker.Config{Name: "x", Module: testwasm.Build(t, "examples/workers/files"), Buckets: map[string]string{"FILES": "files"}}); err == nil || !strings.Contains(err.Error(), "no object storage") {
		t.Fatalf("deploy without object storage: %v", err)
	}
}

// BenchmarkBucketPutGet measures a 1 MiB put from the request body and its get, copied to
// the response by the host, through the files worker.
func BenchmarkBucketPutGet(b *testing.B) {
	_, w, _ := filesEnv(b)
	data := bytes.Repeat([]byte("x"), 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(data)))
	for b.Loop() {
		req := &message.Request{Method: "PUT", Target: "/files/bench", Authority: "example.com", Proto: message.HTTP11,
			Body: bytes.NewReader(data), ContentLength: int64(len(data))}
		rec := &recorder{}
		if _, err := w.Serve(context.Background(), rec, &worker.Request{Message: req}); err != nil || rec.status != 201 {
			b.Fatalf("put: %v %s", err, rec)
		}
		req = &message.Request{Method: "GET", Target: "/files/bench", Authority: "example.com", Proto: message.HTTP11}
		sink := &discardSink{}
		if _, err := w.Serve(context.Background(), sink, &worker.Request{Message: req}); err != nil || sink.n != int64(len(data)) {
			b.Fatalf("get: %v %d", err, sink.n)
		}
	}
}

type discardSink struct{ n int64 }

func (s *discardSink) WriteHeader(*message.Response) error { return nil }
func (s *discardSink) Write(p []byte) (int, error)         { s.n += int64(len(p)); return len(p), nil }
func (s *discardSink) Finish(*message.Header) error        { return nil }
