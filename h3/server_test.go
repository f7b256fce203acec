package h3

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// echo answers with the request body, the method in X-Method and the request's Early-Data.
func echo(ex message.ServerExchange) {
	req := ex.Request()
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			ex.Abort(err)
			return
		}
	}
	var h message.Header
	h.Add("X-Method", req.Method)
	h.Add("X-Proto", req.Proto)
	h.Add("X-Target", req.Target)
	h.Add("X-Conn-Proto", ex.Conn().Proto)
	if v, ok := req.Header.Lookup("early-data"); ok {
		h.Add("X-Early-Data", v)
	}
	if v, ok := req.Header.Lookup("x-in"); ok {
		h.Add("X-In", v)
	}
	respond(ex, 200, &h, body)
}

func TestGetAndPost(t *testing.T) {
	_, addr := startServer(t, echo, nil)
	c, _ := newClient(t)

	res, err := c.Get("https://" + addr + "/a/b?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Proto != "HTTP/3.0" || len(body) != 0 {
		t.Fatalf("GET: got %d %s body %q, want 200 HTTP/3.0 empty", res.StatusCode, res.Proto, body)
	}
	for k, want := range map[string]string{"X-Method": "GET", "X-Proto": message.HTTP3,
		"X-Target": "/a/b?x=1", "X-Conn-Proto": message.HTTP3} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	if res.Header.Get("X-Early-Data") != "" {
		t.Errorf("GET after the handshake marked as early data")
	}

	payload := make([]byte, 300<<10)
	rand.Read(payload)
	req, _ := http.NewRequest("POST", "https://"+addr+"/upload", bytes.NewReader(payload))
	req.Header.Set("X-In", "hello")
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Equal(body, payload) {
		t.Fatalf("POST: got %d and %d bytes (equal %v), want 200 and the %d bytes sent",
			res.StatusCode, len(body), bytes.Equal(body, payload), len(payload))
	}
	if got := res.Header.Get("X-In"); got != "hello" {
		t.Errorf("request header: got %q, want hello", got)
	}
	if got := res.Header.Get("Content-Length"); got != fmt.Sprint(len(payload)) {
		t.Errorf("Content-Length: got %q, want %d", got, len(payload))
	}
}

func TestTrailersBothWays(t *testing.T) {
	_, addr := startServer(t, func(ex message.ServerExchange) {
		req := ex.Request()
		body, err := io.ReadAll(req.Body)
		if err != nil {
			ex.Abort(err)
			return
		}
		var h message.Header
		h.Add("Trailer", "X-Sum")
		h.Add("X-Got-Trailer", req.Trailer.Get("x-checksum"))
		ex.WriteHeader(&message.Response{Status: 200, Header: h, ContentLength: -1})
		ex.Write(body)
		var tr message.Header
		tr.Add("X-Sum", fmt.Sprint(len(body)))
		ex.Finish(&tr)
	}, nil)
	c, _ := newClient(t)
	req, _ := http.NewRequest("POST", "https://"+addr+"/t", io.NopCloser(strings.NewReader("abcdef")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Checksum": {"c0ffee"}}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, res.Body)
	res.Body.Close()
	if string(body) != "abcdef" {
		t.Fatalf("body: got %q, want abcdef", body)
	}
	if got := res.Header.Get("X-Got-Trailer"); got != "c0ffee" {
		t.Errorf("request trailer seen by handler: got %q, want c0ffee", got)
	}
	if got := res.Trailer.Get("X-Sum"); got != "6" {
		t.Errorf("response trailer: got %q, want 6", got)
	}
}

// TestLargeStreamedResponse sends 64 MiB through a handler that writes 32 KiB at a time and
// checks the heap stays far below the response size: writes block on flow control.
func TestLargeStreamedResponse(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfer")
	}
	const total = 64 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 2048)
	_, addr := startServer(t, func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: total})
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := ex.Write(chunk); err != nil {
				ex.Abort(err)
				return
			}
		}
		ex.Finish(nil)
	}, nil)
	c, _ := newClient(t)
	res, err := c.Get("https://" + addr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// Sample the live heap: collect first, so that garbage the collector has not reached
		// yet on a busy machine does not count (HeapInuse did, and peaked far above the
		// bytes actually held). Unbounded buffering would show here as live bytes.
		var ms runtime.MemStats
		for {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(io.Discard, res.Body, buf)
	close(stop)
	wg.Wait()
	if err != nil || n != total {
		t.Fatalf("got %d bytes, err %v; want %d", n, err, total)
	}
	if p := peak.Load(); p > 48<<20 {
		t.Errorf("live heap peaked at %d MiB while streaming 64 MiB; want bounded (< 48 MiB)", p>>20)
	}
	t.Logf("peak live heap %d MiB", peak.Load()>>20)
}

func TestConcurrentStreamsOneConnection(t *testing.T) {
	var active, peak atomic.Int32
	release := make(chan struct{})
	s, addr := startServer(t, func(ex message.ServerExchange) {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		active.Add(-1)
		respond(ex, 200, nil, []byte(ex.Request().Target))
	}, nil)
	c, _ := newClient(t)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := c.Get(fmt.Sprintf("https://%s/s/%d", addr, i))
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || string(b) != fmt.Sprintf("/s/%d", i) {
				errs <- fmt.Errorf("stream %d: got %q, %v", i, b, err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for peak.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := peak.Load(); got != n {
		t.Errorf("concurrent handlers: got %d, want %d", got, n)
	}
	if got := s.ActiveConns(); got != 1 {
		t.Errorf("connections: got %d, want 1", got)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAbortResetsStream(t *testing.T) {
	_, addr := startServer(t, func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 1 << 20})
		ex.Write(make([]byte, 1000))
		ex.Flush()
		ex.Abort(fmt.Errorf("upstream went away"))
	}, nil)
	c, _ := newClient(t)
	res, err := c.Get("https://" + addr + "/abort")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("reading an aborted response: got no error, want a stream reset")
	}
}

func TestHandlerWithoutFinishResets(t *testing.T) {
	_, addr := startServer(t, func(ex message.ServerExchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write([]byte("partial"))
	}, nil)
	c, _ := newClient(t)
	res, err := c.Get("https://" + addr + "/")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Fatal("got a complete response, want a reset stream")
	}
}

func TestNilHandler404(t *testing.T) {
	_, addr := startServer(t, nil, nil)
	c, _ := newClient(t)
	res, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("got %d, want 404", res.StatusCode)
	}
}

func TestDefaults(t *testing.T) {
	st := newServerState(&Server{})
	q := st.quic
	if q.MaxIdleTimeout != DefaultIdleTimeout || q.HandshakeIdleTimeout != DefaultHandshakeTimeout/2 ||
		q.MaxIncomingStreams != DefaultMaxStreams || q.InitialStreamReceiveWindow != DefaultInitialStreamWindow ||
		q.MaxStreamReceiveWindow != DefaultMaxStreamWindow || q.InitialConnectionReceiveWindow != DefaultInitialConnWindow ||
		q.MaxConnectionReceiveWindow != DefaultMaxConnWindow || q.Allow0RTT {
		t.Errorf("quic config defaults: got %+v", q)
	}
	if st.maxHS != DefaultMaxHandshakes || st.retryAt != DefaultMaxHandshakes/4 {
		t.Errorf("handshake cap %d, retry at %d; want %d, %d", st.maxHS, st.retryAt, DefaultMaxHandshakes, DefaultMaxHandshakes/4)
	}
	st = newServerState(&Server{MaxHandshakes: 2, RetryThreshold: -1, InitialStreamWindow: 8 << 20})
	if st.retryAt != 0 || st.maxHS != 2 || st.quic.MaxStreamReceiveWindow != 8<<20 {
		t.Errorf("overrides: retry at %d, cap %d, max stream window %d", st.retryAt, st.maxHS, st.quic.MaxStreamReceiveWindow)
	}
}
