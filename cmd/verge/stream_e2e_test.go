package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/testwasm"
	"golang.org/x/net/http2"
)

// streamGate is a loopback endpoint the stream test worker fetches between its two writes:
// it answers once the test has received the first write, so "b" cannot have been written
// before "a" reached the client.
type streamGate struct {
	url  string
	open chan chan struct{}
}

func newStreamGate(t *testing.T) *streamGate {
	g := &streamGate{open: make(chan chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch := <-g.open:
			close(ch)
			w.Write([]byte("open"))
		case <-time.After(60 * time.Second): // a failure guard only
			http.Error(w, "the client never received the first write", 504)
		}
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/gate"
	return g
}

// release opens the gate for one waiting worker and waits until it was let through.
func (g *streamGate) release(t *testing.T) {
	t.Helper()
	ch := make(chan struct{})
	g.open <- ch
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatal("the worker never reached the gate")
	}
}

// checkFlushedFirst requests path (which writes "a", flushes, waits at the gate, writes "b")
// and checks that "a" arrives while the worker waits, then the rest.
func checkFlushedFirst(t *testing.T, c *http.Client, base, path string, g *streamGate) {
	t.Helper()
	resp, err := c.Get(base + path + "wait=" + url.QueryEscape(g.url))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "a" {
		t.Fatalf("%s: first byte %q, %v (status %d)", path, first, err, resp.StatusCode)
	}
	if resp.ContentLength != -1 {
		t.Fatalf("%s: Content-Length %d on a streamed response", path, resp.ContentLength)
	}
	g.release(t)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "b" {
		t.Fatalf("%s: rest %q, %v; want \"b\"", path, rest, err)
	}
}

// big40MB serves 40 MiB of a pattern and returns its URL and SHA-256.
func big40MB(t *testing.T) (string, [32]byte) {
	const size = 40 << 20
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i*13 + i>>9)
	}
	h := sha256.New()
	for range size / len(chunk) {
		h.Write(chunk)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for range size / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/big", sum
}

// checkStreams runs the streaming checks against a verge serving the stream test worker at
// base: a flushed write before a wait, the same from a Durable Object, and a 40 MiB
// subrequest body passed through intact.
func checkStreams(t *testing.T, c *http.Client, base string) {
	g := newStreamGate(t)
	checkFlushedFirst(t, c, base, "/flush?", g)
	checkFlushedFirst(t, c, base, "/do?o=e2e&", g)
	big, sum := big40MB(t)
	resp, err := c.Get(base + "/proxy?url=" + url.QueryEscape(big))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	var got [32]byte
	copy(got[:], h.Sum(nil))
	if err != nil || resp.StatusCode != 200 || n != 40<<20 || got != sum {
		t.Fatalf("40 MiB through the worker: status %d, %d bytes, %v, sha256 %x want %x", resp.StatusCode, n, err, got, sum)
	}
}

func streamWorkerDir() string {
	return filepath.Join(testwasm.Root(), "worker", "testdata", "stream")
}

// TestDevStreamsResponses: through `verge dev`, a flushed write reaches the client before
// the worker's next write (issue 16: the first byte came only at the end), a Durable
// Object's response streams to the client through the calling worker, and a 40 MiB
// subrequest response passes through (it failed above 32 MiB).
func TestDevStreamsResponses(t *testing.T) {
	p := startDev(t, t.TempDir(), streamWorkerDir())
	checkStreams(t, &http.Client{Timeout: 2 * time.Minute}, "http://"+p.addr)
}

// TestRunStreamsWorkerResponses runs the same checks through `verge run` with a worker
// route, over HTTP/1.1, HTTP/2 (h2c) and HTTP/3.
func TestRunStreamsWorkerResponses(t *testing.T) {
	module := testwasm.BuildFile(t, "worker/testdata/stream")
	certs, err := filepath.Abs("../../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := freePort(t)
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners:
  - {name: main, address: %q}
  - name: secure
    address: %q
    tls: {certificates: [{cert: %q, key: %q}]}
    http3: {enabled: true}
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
routes: [{name: w, worker: stream}]
workers:
  - name: stream
    module: %q
    durable_objects: [{binding: STREAM, class: Streamer}]
    fetch: {allow: [127.0.0.1]}
    limits: {cpu_time: 10s}
`, p.addr, tlsAddr, filepath.Join(certs, "localhost.pem"), filepath.Join(certs, "localhost-key.pem"), p.pidFile, module)
		if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	base := "http://" + p.addr
	c := &http.Client{Timeout: 2 * time.Minute}
	waitFor(t, "verge run to serve the worker", 60*time.Second, func() bool {
		resp, err := c.Get(base + "/nope")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 404
	})
	t.Run("http1", func(t *testing.T) { checkStreams(t, c, base) })
	h2c := &http.Client{Timeout: 2 * time.Minute, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	t.Run("h2c", func(t *testing.T) { checkStreams(t, h2c, base) })
	h3 := h3Client(t)
	h3.Timeout = 2 * time.Minute
	_, port, _ := net.SplitHostPort(tlsAddr)
	t.Run("h3", func(t *testing.T) { checkStreams(t, h3, "https://localhost:"+port) })
}
