package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// releases records Release calls.
type releases struct {
	mu    sync.Mutex
	calls []bool
}

func (r *releases) release(cc *ClientConn, reusable bool) {
	r.mu.Lock()
	r.calls = append(r.calls, reusable)
	r.mu.Unlock()
}

func (r *releases) get() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.calls...)
}

func newClient(t testing.TB, addr string, rel *releases) *ClientConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	opts := ClientOptions{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	if rel != nil {
		opts.Release = rel.release
	}
	cc := NewClientConn(c, opts)
	t.Cleanup(func() { cc.Close() })
	return cc
}

func get(method, target string) *message.Request {
	return &message.Request{Method: method, Target: target, Authority: "example.test", Proto: message.HTTP11}
}

func readBody(t testing.TB, resp *message.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return string(b)
}

func TestClientAgainstNetHTTP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hello":
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Case", r.Header.Get("x-case"))
			io.WriteString(w, "hello")
		case "/chunked":
			w.Header().Set("Trailer", "X-Trailer")
			io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Trailer", "tv")
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Sum"))
			w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
			w.Header().Set("X-CL", r.Header.Get("Content-Length"))
			w.Write(b)
		case "/count":
			n, _ := io.Copy(io.Discard, r.Body)
			io.WriteString(w, strings.Repeat("n", int(n%7)))
			w.Header().Set("X-N", "set-too-late")
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("Content-Length", "42")
			w.WriteHeader(304)
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	}))
	t.Cleanup(origin.Close)
	addr := origin.Listener.Addr().String()
	rel := &releases{}
	cc := newClient(t, addr, rel)
	ctx := context.Background()

	req := get("GET", "/hello")
	req.Header.Add("X-Case", "v1")
	resp, err := cc.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.ContentLength != 5 || resp.Header.Get("X-Host") != "example.test" || resp.Header.Get("X-Case") != "v1" {
		t.Fatalf("got %d CL %d header %v", resp.Status, resp.ContentLength, resp.Header.Fields())
	}
	if resp.Header.Has("Content-Length") {
		t.Errorf("Content-Length kept in Header")
	}
	if got := readBody(t, resp); got != "hello" {
		t.Fatalf("body %q", got)
	}

	resp, err = cc.RoundTrip(ctx, get("GET", "/chunked"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "part1part2" || resp.ContentLength != -1 || resp.Trailer.Get("X-Trailer") != "tv" {
		t.Fatalf("chunked: body %q CL %d trailer %v", b, resp.ContentLength, resp.Trailer.Fields())
	}
	resp.Body.Close()

	// Chunked request with trailers.
	req = get("POST", "/echo")
	req.ContentLength = -1
	req.Body = strings.NewReader("streamed body")
	req.Trailer.Add("X-Sum", "42")
	resp, err = cc.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != "streamed body" || resp.Header.Get("X-Req-Trailer") != "42" || resp.Header.Get("X-TE") != "chunked" {
		t.Fatalf("chunked request: body %q trailer %q TE %q", got, resp.Header.Get("X-Req-Trailer"), resp.Header.Get("X-TE"))
	}

	// POST without body sends Content-Length: 0.
	req = get("POST", "/echo")
	resp, err = cc.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if readBody(t, resp); resp.Header.Get("X-CL") != "0" {
		t.Fatalf("empty POST: Content-Length %q, want 0", resp.Header.Get("X-CL"))
	}

	// HEAD, 204 and 304 have no content.
	for _, tc := range []struct {
		method, target string
		status         int
		cl             int64
	}{{"HEAD", "/hello", 200, 5}, {"GET", "/204", 204, 0}, {"GET", "/304", 304, -1}} {
		resp, err := cc.RoundTrip(ctx, get(tc.method, tc.target))
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp); resp.Status != tc.status || resp.ContentLength != tc.cl || got != "" {
			t.Fatalf("%s %s: got %d CL %d body %q", tc.method, tc.target, resp.Status, resp.ContentLength, got)
		}
	}

	// A 1 GiB-sized body is not needed to show streaming; 8 MiB through a reader that never
	// holds more than one read shows the upload is not buffered.
	req = get("PUT", "/count")
	req.ContentLength = 8 << 20
	req.Body = io.LimitReader(rand.Reader, 8<<20)
	resp, err = cc.RoundTrip(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != strings.Repeat("n", (8<<20)%7) {
		t.Fatalf("upload count %q", got)
	}
	if !cc.Reusable() || cc.Requests() != 8 {
		t.Fatalf("Reusable %v Requests %d, want true 8", cc.Reusable(), cc.Requests())
	}

	resp, err = cc.RoundTrip(ctx, get("GET", "/close"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	want := []bool{true, true, true, true, true, true, true, true, false}
	if got := rel.get(); !equalBools(got, want) {
		t.Fatalf("releases %v, want %v", got, want)
	}
	if cc.Reusable() {
		t.Fatal("connection reusable after Connection: close")
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestClientExpectContinue(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			w.WriteHeader(403)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	t.Cleanup(origin.Close)
	rel := &releases{}
	// The wait for 100 Continue is unbounded here (an hour), so the body goes out only
	// because the interim response arrived: no duration to measure on a busy machine.
	conn, err := net.Dial("tcp", origin.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConn(conn, ClientOptions{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		ContinueTimeout: time.Hour, Release: rel.release})
	t.Cleanup(func() { cc.Close() })
	req := get("POST", "/ok")
	req.Header.Add("Expect", "100-continue")
	req.ContentLength = 4
	req.Body = strings.NewReader("data")
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != "data" {
		t.Fatalf("body %q, want data (sent after 100 Continue)", got)
	}
	req = get("POST", "/deny")
	req.Header.Add("Expect", "100-continue")
	req.ContentLength = 4
	body := &countingReader{r: strings.NewReader("data")}
	req.Body = body
	resp, err = cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.Status != 403 || body.n != 0 {
		t.Fatalf("got %d with %d body bytes read, want 403 and none", resp.Status, body.n)
	}
	if got := rel.get(); !equalBools(got, []bool{true, false}) {
		t.Fatalf("releases %v", got)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// rawServer accepts connections and runs fn on each.
func rawServer(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return serveLoopback(t, func(c net.Conn, done func()) {
		defer done()
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fn(c, bufio.NewReader(c))
	})
}

// readRequestHead consumes a request head.
func readRequestHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		l, err := br.ReadString('\n')
		sb.WriteString(l)
		if err != nil {
			return sb.String(), err
		}
		if l == "\r\n" {
			return sb.String(), nil
		}
	}
}

func TestClientEdgeCases(t *testing.T) {
	cases := []struct {
		name     string
		method   string
		response string
		status   int
		body     string
		trailer  string
		kind     fault.Kind // non-zero: RoundTrip or the body read fails with this kind
		reusable bool
		coding   string // the response's TransferCoding
	}{
		{name: "content-length", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", reusable: true},
		{name: "chunked with trailer", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nX-T: 1\r\n\r\n", status: 200, body: "ok", trailer: "1", reusable: true},
		{name: "read until close", response: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, body: "all of it"},
		{name: "HTTP/1.0 response", response: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "HTTP/1.0 keep-alive", response: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", reusable: true},
		{name: "interim responses skipped", response: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", reusable: true},
		{name: "no reason phrase", response: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, reusable: true},
		{name: "empty reason phrase", response: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", status: 404, reusable: true},
		{name: "connection close", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "extra bytes after response", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk", status: 200, body: "ok"},
		{name: "HEAD with length", method: "HEAD", response: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", status: 200, reusable: true},
		{name: "CL and TE", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", kind: fault.InvalidResponse},
		{name: "double CL", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", kind: fault.InvalidResponse},
		// RFC 9112 section 6.3 item 4: a response whose final coding is not chunked runs
		// until the connection closes; the codings stay on the response.
		{name: "TE gzip", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx", status: 200, body: "xx", coding: "gzip"},
		{name: "TE chunked then gzip", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nxx", status: 200, body: "2\r\nxx", coding: "chunked, gzip"},
		{name: "TE gzip then chunked", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip , chunked\r\n\r\n2\r\nxx\r\n0\r\n\r\n", status: 200, body: "xx", coding: "gzip", reusable: true},
		{name: "TE malformed", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n", kind: fault.InvalidResponse},
		{name: "TE chunked twice", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", kind: fault.InvalidResponse},
		{name: "TE gzip and CL", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nxx", kind: fault.InvalidResponse},
		{name: "obs-fold", response: "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", kind: fault.InvalidResponse},
		{name: "bare LF", response: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", kind: fault.InvalidResponse},
		{name: "bad status line", response: "HTTP/1.1 2x0 OK\r\n\r\n", kind: fault.InvalidResponse},
		{name: "HTTP/2 status line", response: "HTTP/2.0 200 OK\r\n\r\n", kind: fault.InvalidResponse},
		{name: "bad chunk size", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: 200, kind: fault.InvalidResponse},
		{name: "truncated body", response: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", status: 200, kind: fault.ConnectionClosed},
		{name: "closed before response", response: "", kind: fault.ConnectionClosed},
		{name: "closed inside head", response: "HTTP/1.1 200 OK\r\nContent-", kind: fault.ConnectionClosed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				c.Write([]byte(tc.response))
				if tc.reusable {
					readRequestHead(br) // keep the connection open until the client is done
				}
			})
			rel := &releases{}
			cc := newClient(t, addr, rel)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp, err := cc.RoundTrip(context.Background(), get(method, "/"))
			var body []byte
			if err == nil {
				if resp.Status != tc.status {
					t.Fatalf("status %d, want %d", resp.Status, tc.status)
				}
				if resp.TransferCoding != tc.coding {
					t.Errorf("TransferCoding %q, want %q", resp.TransferCoding, tc.coding)
				}
				body, err = io.ReadAll(resp.Body)
				if err == nil && (string(body) != tc.body || resp.Trailer.Get("X-T") != tc.trailer) {
					t.Errorf("body %q trailer %q, want %q %q", body, resp.Trailer.Get("X-T"), tc.body, tc.trailer)
				}
				resp.Body.Close()
			}
			if tc.kind != 0 {
				var fe *fault.Error
				if !errors.As(err, &fe) || fe.Kind != tc.kind || fe.Source != fault.Upstream {
					t.Fatalf("error %v, want upstream %v", err, tc.kind)
				}
			} else if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			want := []bool{tc.reusable && tc.kind == 0}
			if got := rel.get(); !equalBools(got, want) {
				t.Fatalf("releases %v, want %v", got, want)
			}
		})
	}
}

func TestClientStaleConnRetry(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		// Close without Connection: close, as an idle timeout on the origin would.
	})
	rel := &releases{}
	cc := newClient(t, addr, rel)
	resp, err := cc.RoundTrip(context.Background(), get("GET", "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(50 * time.Millisecond)
	_, err = cc.RoundTrip(context.Background(), get("GET", "/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || !fe.Retry || !fe.Reused || fe.Kind != fault.ConnectionClosed {
		t.Fatalf("error %#v, want a retryable ConnectionClosed on a reused conn", err)
	}
	if got := rel.get(); !equalBools(got, []bool{true, false}) {
		t.Fatalf("releases %v", got)
	}
	// A first request failing the same way is not retryable.
	addr = rawServer(t, func(c net.Conn, br *bufio.Reader) { readRequestHead(br) })
	cc = newClient(t, addr, nil)
	_, err = cc.RoundTrip(context.Background(), get("GET", "/"))
	if !errors.As(err, &fe) || fe.Retry || fe.Reused {
		t.Fatalf("first-use error %#v should not be retryable", err)
	}
}

func TestClientEarlyResponse(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		c.Write([]byte("HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		c.(*net.TCPConn).CloseWrite()
		time.Sleep(200 * time.Millisecond)
	})
	rel := &releases{}
	cc := newClient(t, addr, rel)
	req := get("POST", "/")
	req.ContentLength = 64 << 20
	req.Body = io.LimitReader(zeroReader{}, 64<<20)
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	readBody(t, resp)
	if resp.Status != 413 {
		t.Fatalf("status %d, want 413", resp.Status)
	}
	if got := rel.get(); !equalBools(got, []bool{false}) {
		t.Fatalf("releases %v", got)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestClientUpgrade(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		head, _ := readRequestHead(br)
		if !strings.Contains(head, "\r\nConnection: Upgrade\r\n") || !strings.Contains(head, "\r\nUpgrade: echo\r\n") {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nfirst"))
		buf := make([]byte, 4)
		io.ReadFull(br, buf)
		c.Write(buf)
	})
	rel := &releases{}
	cc := newClient(t, addr, rel)
	req := get("GET", "/ws")
	req.Header.Add("Upgrade", "echo")
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 {
		t.Fatalf("status %d", resp.Status)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatal("101 body is not an io.ReadWriteCloser")
	}
	rw.Write([]byte("ping"))
	got := make([]byte, 9)
	if _, err := io.ReadFull(rw, got); err != nil || string(got) != "firstping" {
		t.Fatalf("got %q, %v", got, err)
	}
	rw.Close()
	if r := rel.get(); !equalBools(r, []bool{false}) || cc.Reusable() {
		t.Fatalf("releases %v reusable %v", r, cc.Reusable())
	}
}

func TestClientCancel(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.Copy(io.Discard, br) // never answer: hold the conn until the client closes it
	})
	rel := &releases{}
	cc := newClient(t, addr, rel)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := cc.RoundTrip(ctx, get("GET", "/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Canceled {
		t.Fatalf("error %v, want Canceled", err)
	}
	if got := rel.get(); !equalBools(got, []bool{false}) {
		t.Fatalf("releases %v", got)
	}
}

func TestClientToOwnServer(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	cc := newClient(t, addr, nil)
	for i := range 3 {
		req := get("POST", "/x")
		req.ContentLength = -1
		req.Body = bytes.NewReader(bytes.Repeat([]byte("ab"), 10000*(i+1)))
		req.Trailer.Add("X-I", "t")
		resp, err := cc.RoundTrip(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		got := readBody(t, resp)
		if !strings.Contains(got, "trailer X-I: t\n") || len(got) < 20000*(i+1) {
			t.Fatalf("round %d: %d bytes, %q...", i, len(got), got[:40])
		}
	}
}

// TestClientUploadBoundedMemory streams 64 MiB through ClientConn to a Server and checks that
// the bytes allocated meanwhile stay far below the body size.
func TestClientUploadBoundedMemory(t *testing.T) {
	const size = 64 << 20
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		n, err := io.Copy(io.Discard, ex.Request().Body)
		if err != nil || n != size {
			t.Errorf("server got %d bytes, %v", n, err)
		}
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}})
	cc := newClient(t, addr, nil)
	for _, cl := range []int64{size, -1} {
		req := get("PUT", "/big")
		req.ContentLength = cl
		req.Body = io.LimitReader(zeroReader{}, size)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		resp, err := cc.RoundTrip(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		runtime.ReadMemStats(&after)
		if resp.Status != 204 {
			t.Fatalf("status %d", resp.Status)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
			t.Fatalf("ContentLength %d: allocated %d bytes for a %d-byte upload", cl, alloc, size)
		}
	}
}

// The upgraded stream supports a half-close (the peer reads EOF and can still answer), and a
// Close from one goroutine while another reads (how a tunnel ends) is safe: the bytes that
// came with the 101 belong to the stream, not to the connection's pooled buffer.
func TestClientUpgradeHalfCloseAndConcurrentClose(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello"))
		got, _ := io.ReadAll(br) // until the client's half-close
		c.Write([]byte(" got " + string(got)))
		if strings.Contains(string(got), "stay") {
			for i := 0; i < 1000; i++ { // stream until the client closes
				if _, err := c.Write([]byte("more")); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	upgrade := func() (*ClientConn, io.ReadWriteCloser) {
		cc := newClient(t, addr, nil)
		req := get("GET", "/ws")
		req.Header.Add("Upgrade", "echo")
		resp, err := cc.RoundTrip(context.Background(), req)
		if err != nil || resp.Status != 101 {
			t.Fatalf("upgrade: %v", err)
		}
		return cc, resp.Body.(io.ReadWriteCloser)
	}

	_, rw := upgrade()
	rw.Write([]byte("ping"))
	cw, ok := rw.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("the upgraded stream has no CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if got, err := io.ReadAll(rw); err != nil || string(got) != "hello got ping" {
		t.Fatalf("after the half-close read %q, %v; want %q", got, err, "hello got ping")
	}
	rw.Close()

	for range 20 {
		_, rw := upgrade()
		rw.Write([]byte("stay"))
		rw.(interface{ CloseWrite() error }).CloseWrite()
		done := make(chan struct{})
		go func() {
			defer close(done)
			io.Copy(io.Discard, rw)
		}()
		rw.Close()
		<-done
	}
}

// ReadTimeout and WriteTimeout bound the exchange, not the stream after a 101: a deadline left
// over from reading the response head must not cut the stream later (the caller bounds it).
func TestClientUpgradeNoStaleDeadline(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(br, buf); err == nil {
			c.Write(buf)
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := NewClientConn(c, ClientOptions{ReadTimeout: 50 * time.Millisecond, WriteTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { cc.Close() })
	req := get("GET", "/ws")
	req.Header.Add("Upgrade", "echo")
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil || resp.Status != 101 {
		t.Fatalf("upgrade: %v", err)
	}
	rw := resp.Body.(io.ReadWriteCloser)
	defer rw.Close()
	time.Sleep(150 * time.Millisecond)
	if _, err := rw.Write([]byte("ping")); err != nil {
		t.Fatalf("write after a quiet spell: %v", err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(rw, got); err != nil || string(got) != "ping" {
		t.Fatalf("read after a quiet spell: %q, %v", got, err)
	}
}

// Trailer fields that would change framing, routing or connection handling if a recipient
// merged them into the head are not written, in requests or responses; others are.
func TestForbiddenTrailersNotWritten(t *testing.T) {
	tr := func(h *message.Header) {
		for _, n := range []string{"Host", "Content-Length", "transfer-encoding", "Trailer", "Connection", "TE", "Upgrade", "Keep-Alive", "X-Sum"} {
			h.Add(n, "v")
		}
	}
	const want = "0\r\nX-Sum: v\r\n\r\n"
	gotReq := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		b, _ := io.ReadAll(io.LimitReader(br, int64(len("3\r\nabc\r\n")+len(want))))
		gotReq <- string(b)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	})
	cc := newClient(t, addr, nil)
	req := get("POST", "/")
	req.Body, req.ContentLength = strings.NewReader("abc"), -1
	tr(&req.Trailer)
	resp, err := cc.RoundTrip(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if got := <-gotReq; got != "3\r\nabc\r\n"+want {
		t.Fatalf("request body and trailers %q, want %q", got, "3\r\nabc\r\n"+want)
	}

	saddr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		var h message.Header
		tr(&h)
		ex.Finish(&h)
	}})
	c := dial(t, saddr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	out, _ := readAllUntilClose(c, 3*time.Second)
	if !strings.HasSuffix(out, "\r\n\r\n"+want) {
		t.Fatalf("response %q, want it to end with %q", out, want)
	}
}

// A body larger than the read buffer is topped up with reads that do not wait; those reads
// must stop at the body's end, so that a second response already sent behind it on the same
// connection stays intact for the next round trip, and the body's parts are read in order.
func TestClientBodyTopUpStopsAtBodyEnd(t *testing.T) {
	first := strings.Repeat("0123456789", 2000) // 20,000 bytes: past the 4 KiB read buffer
	second := "second"
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequestHead(br); err != nil {
			return
		}
		resp := "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + first +
			"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n" + second
		// Half now, the rest (with the second response) a little later: the top-up finds
		// part of the body and must not wait for the rest.
		io.WriteString(c, resp[:len(resp)/2])
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, resp[len(resp)/2:])
		readRequestHead(br)
	})
	cc := newClient(t, addr, nil)
	resp, err := cc.RoundTrip(context.Background(), get("GET", "/a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != first {
		t.Fatalf("first body: %d bytes, want %d (equal: %v)", len(got), len(first), got == first)
	}
	resp, err = cc.RoundTrip(context.Background(), get("GET", "/b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != second {
		t.Fatalf("second body %q, want %q", got, second)
	}
}

// Bytes that are not an HTTP/1 response are reported as a malformed response, not as a head
// that is too large (issue 12: random bytes from an origin were "response head too large").
func TestClientMalformedResponseClassified(t *testing.T) {
	random := make([]byte, 64<<10)
	x := uint32(2463534242)
	for i := range random {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		random[i] = byte(x)
	}
	noLF := []byte(strings.Repeat("garbage without a line end ", 4096))
	big := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", 128<<10) + "\r\n\r\n"
	cases := []struct {
		name     string
		response []byte
		want     string
	}{
		{"random bytes", random, "malformed response from origin"},
		{"text without line ends", noLF, "malformed response from origin"},
		{"another protocol", []byte("SSH-2.0-OpenSSH_9.6\r\n"), "malformed response from origin"},
		{"head too large", []byte(big), "response head too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				c.Write(tc.response)
			})
			cc := newClient(t, addr, &releases{})
			_, err := cc.RoundTrip(context.Background(), get("GET", "/"))
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.InvalidResponse || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid response saying %q", err, tc.want)
			}
		})
	}
}
