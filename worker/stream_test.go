package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/sqlitedb"
	"github.com/verge-edge/verge/internal/testwasm"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
	"github.com/verge-edge/verge/worker"
)

// flushSink is a ResponseWriter with Flush (as message.ServerExchange has) that reports
// each flush with the body so far, and hashes the body instead of keeping it when asked.
type flushSink struct {
	mu       sync.Mutex
	status   int
	length   int64
	header   message.Header
	body     bytes.Buffer
	hash     hash.Hash
	n        int64
	flushes  int
	finished bool
	flushed  chan string
}

func newFlushSink() *flushSink { return &flushSink{flushed: make(chan string, 64)} }

func (s *flushSink) WriteHeader(resp *message.Response) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.length, s.header = resp.Status, resp.ContentLength, resp.Header.Clone()
	return nil
}

func (s *flushSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += int64(len(p))
	if s.hash != nil {
		return s.hash.Write(p)
	}
	return s.body.Write(p)
}

func (s *flushSink) Flush() error {
	s.mu.Lock()
	s.flushes++
	body := s.body.String()
	s.mu.Unlock()
	select {
	case s.flushed <- body:
	default:
	}
	return nil
}

func (s *flushSink) Finish(*message.Header) error {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
	return nil
}

// gate is a loopback endpoint that answers only once the test opens it: the worker fetches
// it between its two writes, so the test knows the second write has not happened before.
type gate struct {
	srv  *httptest.Server
	open chan struct{}
	hits chan struct{}
	// check, when set, runs when the gate is reached (before it is open).
	check func() error
}

func newGate(t *testing.T) *gate {
	g := &gate{open: make(chan struct{}), hits: make(chan struct{}, 8)}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.hits <- struct{}{}
		if g.check != nil {
			if err := g.check(); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		select {
		case <-g.open:
			w.Write([]byte("open"))
		case <-time.After(60 * time.Second): // a failure guard only
			http.Error(w, "gate never opened", 504)
		}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func streamEnv(t *testing.T, l worker.Limits) (*env, *worker.Worker, string) {
	t.Helper()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	dir := t.TempDir()
	e := newEnv(t, dir, worker.Services{Transport: tr})
	if l.CPUTime == 0 {
		l.CPUTime = 5 * time.Second // generous: the tests run beside wasm compiles
	}
	cfg := worker.Config{
		Name:    "stream",
		Module:  testwasm.Build(t, "worker/testdata/stream"),
		Durable: map[string]worker.DurableBinding{"STREAM": {Class: "Streamer"}},
		Limits:  l,
		// For /service: the worker calls itself through a service binding.
		Services: map[string]string{"SELF": "stream"},
	}
	cfg.Fetch.Allow = []string{"127.0.0.1"}
	return e, e.deploy(t, cfg), dir
}

// serveAsync runs the worker for target in the background.
func serveStreamAsync(w *worker.Worker, out worker.ResponseWriter, target string) chan error {
	done := make(chan error, 1)
	go func() {
		req := &message.Request{Method: "GET", Target: target, Authority: "example.com", Proto: message.HTTP11}
		_, err := w.Serve(context.Background(), out, &worker.Request{Message: req, RemoteAddr: "127.0.0.1"})
		done <- err
	}()
	return done
}

// awaitFlush waits for a flush of the sink that carries want.
func awaitFlush(t *testing.T, s *flushSink, want string) {
	t.Helper()
	timeout := time.After(60 * time.Second) // a failure guard only
	for {
		select {
		case got := <-s.flushed:
			if got == want {
				return
			}
			t.Logf("flush with %q", got)
		case <-timeout:
			t.Fatalf("no flush carried %q while the worker waits before its next write", want)
		}
	}
}

// TestFlushSendsBeforeNextWrite is issue 16's report through the Go API: a write, a flush
// and a pause before the next write delivered nothing until the end. The worker fetches the
// gate between its writes; the gate opens only once "a" was flushed to the sink.
func TestFlushSendsBeforeNextWrite(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{})
	g := newGate(t)
	out := newFlushSink()
	done := serveStreamAsync(w, out, "/flush?wait="+g.srv.URL+"/gate")
	awaitFlush(t, out, "a")
	if out.status != 200 || out.length != -1 {
		t.Fatalf("flushed head: status %d, length %d; want 200 and -1 (streamed)", out.status, out.length)
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.body.String() != "ab" || !out.finished {
		t.Fatalf("got %q (finished %v), want \"ab\"", out.body.String(), out.finished)
	}
}

// origin40MB serves 40 MiB of a deterministic pattern, with or without Content-Length.
func origin40MB(t *testing.T) (*httptest.Server, [32]byte, int64) {
	const size = 40 << 20
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>8)
	}
	h := sha256.New()
	for range size / len(chunk) {
		h.Write(chunk)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, sum, size
}

// TestFetchStreams40MB: a 40 MiB subrequest response (it failed at 32 MiB) passes through
// io.Copy to the client intact, in bounded memory: the guest's memory limit is below the
// body's size, and the host allocates far less than the body while copying it.
func TestFetchStreams40MB(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{Memory: 24 << 20})
	srv, sum, size := origin40MB(t)
	for _, q := range []string{"", "?chunked=1"} {
		t.Run("query="+q, func(t *testing.T) {
			out := newFlushSink()
			out.hash = sha256.New()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := <-serveStreamAsync(w, out, "/proxy?url="+srv.URL+"/big"+strings.ReplaceAll(q, "?", "%3F"))
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			var got [32]byte
			copy(got[:], out.hash.Sum(nil))
			if out.status != 200 || out.n != size || got != sum {
				t.Fatalf("got status %d, %d bytes, sha256 %x; want 200, %d bytes, %x", out.status, out.n, got, size, sum)
			}
			if out.flushes == 0 {
				t.Fatal("the streamed body was not flushed as it arrived")
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("host allocated %d KiB passing %d MiB through (%d flushes)", alloc>>10, size>>20, out.flushes)
			if alloc > uint64(size/4) {
				t.Fatalf("host allocated %d bytes for a %d-byte body: not streamed", alloc, size)
			}
		})
	}
}

// TestObjectStreamsAfterDurableWrite: a Durable Object's flushed bytes reach the client
// while the object still runs (it waits at the gate), and only after the storage write it
// made before them is durable: the gate reads the object's database from another
// connection when it is reached.
func TestObjectStreamsAfterDurableWrite(t *testing.T) {
	_, w, dir := streamEnv(t, worker.Limits{})
	ns := "stream-Streamer"
	path := filepath.Join(dir, "do", ns, durable.IDFromName(ns, "x").String()+".sqlite")
	g := newGate(t)
	g.check = func() error {
		db, err := sqlitedb.Open(context.Background(), path, sqlitedb.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer db.Close()
		var v string
		if err := db.QueryRow("SELECT value FROM _verge_kv WHERE key = ?", []byte("n")).Scan(&v); err != nil || v != "1" {
			return fmt.Errorf("the object's write is not durable when its bytes left: %q, %v", v, err)
		}
		return nil
	}
	out := newFlushSink()
	done := serveStreamAsync(w, out, "/do?o=x&wait="+g.srv.URL+"/gate")
	awaitFlush(t, out, "a")
	if out.status != 200 || out.length != -1 || out.header.Get("X-Count") != "1" {
		t.Fatalf("head: status %d, length %d, X-Count %q", out.status, out.length, out.header.Get("X-Count"))
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.body.String() != "ab" {
		t.Fatalf("got %q, want \"ab\"", out.body.String())
	}
	// A second request finds the object's state and its input gate free.
	out = newFlushSink()
	if err := <-serveStreamAsync(w, out, "/do?o=x"); err != nil || out.body.String() != "ab" || out.header.Get("X-Count") != "2" {
		t.Fatalf("second request: %v, %q, X-Count %q", err, out.body.String(), out.header.Get("X-Count"))
	}
}

// TestOpenBodiesLimited: a worker that opens streamed bodies without reading them is refused
// at MaxOpenBodies; the bodies are closed when its invocation ends (the next one can open
// as many again).
func TestOpenBodiesLimited(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{Subrequests: 100})
	srv, _, _ := origin40MB(t)
	for range 2 {
		out := newFlushSink()
		if err := <-serveStreamAsync(w, out, "/handles?url="+srv.URL+"/big"); err != nil {
			t.Fatal(err)
		}
		if want := "limit after " + strconv.Itoa(worker.MaxOpenBodies); out.body.String() != want {
			t.Fatalf("got %q, want %q", out.body.String(), want)
		}
	}
}

// TestObjectKeepsTurnWhenCallerCloses: a caller that reads the start of an object's large
// streamed response and closes the body does not leave the object blocked (its response is
// over the unread bound) nor roll back its turn: the next request sees its write.
func TestObjectKeepsTurnWhenCallerCloses(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{})
	out := newFlushSink()
	if err := <-serveStreamAsync(w, out, "/do-close?o=c"); err != nil || out.body.String() != "closed after a count 1" {
		t.Fatalf("got %v, %q", err, out.body.String())
	}
	out = newFlushSink()
	if err := <-serveStreamAsync(w, out, "/do?o=c"); err != nil || out.body.String() != "ab" || out.header.Get("X-Count") != "2" {
		t.Fatalf("next request: %v, %q, X-Count %q (want 2: the first turn's write kept)", err, out.body.String(), out.header.Get("X-Count"))
	}
}

// TestStreamedBodyBoundedByWallTime: an origin that sends its head and then nothing holds a
// worker copying its body only until the worker's wall time (1 s here), well before the
// body's idle timeout (15 s): the invocation fails and its instance is discarded.
func TestStreamedBodyBoundedByWallTime(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{WallTime: time.Second})
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Write([]byte("x"))
		rw.(http.Flusher).Flush()
		<-stall
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stall) }) // runs first: the handler returns, Close does not wait
	out := newFlushSink()
	done := serveStreamAsync(w, out, "/proxy?url="+srv.URL+"/stall")
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("a stalled body ended the invocation normally: %q", out.body.String())
		}
		t.Logf("stalled body: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the wall time limit did not end a read of a stalled body")
	}
}

// TestObjectFlushInsideTransactionWaits: an object that flushes inside a storage transaction
// releases nothing before the transaction ends (its writes could still be rolled back): when
// the object reaches the gate, still inside the transaction, the client has no byte.
func TestObjectFlushInsideTransactionWaits(t *testing.T) {
	_, w, _ := streamEnv(t, worker.Limits{})
	g := newGate(t)
	out := newFlushSink()
	g.check = func() error {
		out.mu.Lock()
		defer out.mu.Unlock()
		if out.n != 0 || out.status != 0 {
			return fmt.Errorf("the client got status %d and %d bytes from inside a transaction", out.status, out.n)
		}
		return nil
	}
	close(g.open)
	if err := <-serveStreamAsync(w, out, "/do?o=t&p=/tx&wait="+g.srv.URL+"/gate"); err != nil {
		t.Fatal(err)
	}
	if out.body.String() != "ab" || out.status != 200 {
		t.Fatalf("got %d %q, want 200 \"ab\"", out.status, out.body.String())
	}
	select {
	case <-g.hits:
	default:
		t.Fatal("the object never reached the gate")
	}
}
