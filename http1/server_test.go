package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

func TestKeepAliveAndPipelining(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// Three pipelined requests in one write, one with a body.
	c.Write([]byte("GET /one HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /three HTTP/1.1\r\nHost: a\r\n\r\n"))
	for _, want := range []string{"GET /one HTTP/1.1 host=a\n", "POST /two HTTP/1.1 host=a\n", "GET /three HTTP/1.1 host=a\n"} {
		r := readRawResponse(t, br, false)
		if r.status != 200 || !strings.HasPrefix(r.body, want) {
			t.Fatalf("got %d %q, want 200 %q", r.status, r.body, want)
		}
	}
	// The connection stays open for a fourth request.
	c.Write([]byte("GET /four HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, br, false); !strings.HasPrefix(r.body, "GET /four ") {
		t.Fatalf("fourth response body %q", r.body)
	}
}

func TestRequestFields(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("GET http://Example.com:8080?q=1 HTTP/1.1\r\nHost: other\r\nX-Case: V\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"))
	r := readRawResponse(t, br, false)
	want := "GET /?q=1 HTTP/1.1 host=Example.com:8080\nX-Case: V\nConnection: Upgrade\nUpgrade: foo\nbody=\n"
	if r.body != want {
		t.Fatalf("body %q, want %q", r.body, want)
	}
}

func TestExpectContinue(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"))
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v; want 100 Continue", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q", l)
	}
	c.Write([]byte("hello"))
	r := readRawResponse(t, br, false)
	if r.status != 200 || !strings.Contains(r.body, "body=hello\n") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
}

func TestExpectContinueNotReadCloses(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 403, ContentLength: 0})
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 403 Forbidden\r\n") || !closed || strings.Contains(out, "100 Continue") {
		t.Fatalf("got %q closed=%v, want a 403 without 100 Continue, then close", out, closed)
	}
}

func TestNoBodyResponses(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		status := 200
		switch ex.Request().Path() {
		case "/204":
			status = 204
		case "/304":
			status = 304
		}
		ex.WriteHeader(&message.Response{Status: status, ContentLength: 5})
		ex.Write([]byte("hello"))
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	cases := []struct {
		req    string
		status int
		cl     string
	}{
		{"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 200, "5"},
		{"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n", 204, ""},
		{"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n", 304, "5"},
	}
	for _, tc := range cases {
		c.Write([]byte(tc.req))
		r := readRawResponse(t, br, true)
		if r.status != tc.status || r.header["content-length"] != tc.cl {
			t.Fatalf("%q: got %d CL %q, want %d CL %q", tc.req, r.status, r.header["content-length"], tc.status, tc.cl)
		}
	}
	// No body bytes were sent: the next response starts right away.
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, br, false); r.status != 200 || r.body != "hello" {
		t.Fatalf("got %d %q after bodiless responses", r.status, r.body)
	}
}

func TestChunkedRequestAndResponseWithTrailers(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		req := ex.Request()
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		if req.ContentLength != -1 || req.Trailer.Get("X-Sum") != "abc" {
			t.Errorf("ContentLength %d trailer %q", req.ContentLength, req.Trailer.Get("X-Sum"))
		}
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write(body[:3])
		ex.Flush()
		ex.Write(body[3:])
		var tr message.Header
		tr.Add("X-Out", "done")
		ex.Finish(&tr)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"4;ext=1;q=\"x y\"\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Sum: abc\r\n\r\n"))
	r := readRawResponse(t, br, false)
	if r.header["transfer-encoding"] != "chunked" || r.body != "wikipedia" || r.trailer["x-out"] != "done" {
		t.Fatalf("got TE %q body %q trailer %v", r.header["transfer-encoding"], r.body, r.trailer)
	}
}

// TestChunkedLargeWrites checks chunks written straight to the connection (larger than the
// buffer), each with its CRLF in the same writev, between small buffered ones and flushes.
func TestChunkedLargeWrites(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write(big)
		ex.Flush()
		ex.Write([]byte("small"))
		ex.Write(big[:40<<10])
		ex.Write(big[:3])
		ex.Flush()
		ex.Write(big)
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	r := readRawResponse(t, br, false)
	want := string(big) + "small" + string(big[:40<<10]) + string(big[:3]) + string(big)
	if r.header["transfer-encoding"] != "chunked" || r.body != want {
		t.Fatalf("got TE %q, body of %d bytes, want %d", r.header["transfer-encoding"], len(r.body), len(want))
	}
	// The connection is still in step: a second response follows.
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, br, false); r.body != want {
		t.Fatalf("second response: body of %d bytes", len(r.body))
	}
}

func TestHTTP10(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write([]byte("until close"))
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	want := "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close"
	if out != want || !closed {
		t.Fatalf("got %q closed=%v, want %q then close", out, closed, want)
	}

	addr = startServer(t, &Server{Handler: echoHandler})
	c = dial(t, addr)
	br := bufio.NewReader(c)
	for range 2 {
		c.Write([]byte("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
		r := readRawResponse(t, br, false)
		if r.header["connection"] != "keep-alive" || !strings.HasPrefix(r.body, "GET / HTTP/1.0") {
			t.Fatalf("keep-alive HTTP/1.0: got %v %q", r.header, r.body)
		}
	}
}

func TestConnectionClose(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	if !closed || !strings.Contains(out, "\r\nConnection: close\r\n") {
		t.Fatalf("got %q closed=%v", out, closed)
	}
}

func TestUnreadBodyDrained(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	body := strings.Repeat("x", 100<<10)
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 102400\r\n\r\n" + body))
	if r := readRawResponse(t, br, false); r.body != "ok" || r.header["connection"] == "close" {
		t.Fatalf("got %q %v", r.body, r.header)
	}
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, br, false); r.body != "ok" {
		t.Fatalf("second request after drained body: %q", r.body)
	}
	// A body beyond the drain bound closes the connection.
	c.Write([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n"))
	if r := readRawResponse(t, br, false); r.header["connection"] != "close" {
		t.Fatalf("large unread body: Connection %q, want close", r.header["connection"])
	}
}

func TestHandlerWithoutResponse(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {}})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 500 ") || !closed {
		t.Fatalf("got %q closed=%v", out, closed)
	}
}

func TestShortContentLengthAborts(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 10})
		ex.Write([]byte("short"))
		if err := ex.Finish(nil); err != ErrContentLength {
			t.Errorf("Finish = %v, want ErrContentLength", err)
		}
	}})
	c := dial(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	if !strings.HasSuffix(out, "\r\n\r\nshort") || !closed {
		t.Fatalf("got %q closed=%v", out, closed)
	}
}

func TestUpgrade(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		resp := &message.Response{Status: 101}
		resp.Header.Add("Connection", "Upgrade")
		resp.Header.Add("Upgrade", "echo")
		rw, err := ex.Upgrade(resp)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			return
		}
		defer rw.Close()
		io.Copy(rw, io.LimitReader(rw, 10))
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// The first bytes of the new protocol travel with the request head.
	c.Write([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello"))
	r := readRawResponse(t, br, true)
	if r.status != 101 || r.header["upgrade"] != "echo" {
		t.Fatalf("got %d %v", r.status, r.header)
	}
	c.Write([]byte("world"))
	got := make([]byte, 10)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "helloworld" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func TestPrefixAndShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		prefix := make([]byte, 3)
		io.ReadFull(c, prefix)
		(&Server{Handler: echoHandler}).ServeConnWithPrefix(ctx, c, nil, prefix)
	}()
	c := dial(t, ln.Addr().String())
	br := bufio.NewReader(c)
	c.Write([]byte("GET /p HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, br, false); !strings.HasPrefix(r.body, "GET /p HTTP/1.1") {
		t.Fatalf("body %q", r.body)
	}
	cancel() // the idle connection closes at once
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("ServeConn did not return after the context was canceled")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read after shutdown: %v, want EOF", err)
	}
}

func TestNetHTTPClientAgainstServer(t *testing.T) {
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		req := ex.Request()
		n, err := io.Copy(io.Discard, req.Body)
		if err != nil {
			t.Errorf("body: %v", err)
		}
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		for range 4 {
			ex.Write(bytes.Repeat([]byte("z"), int(n/4)))
		}
		ex.Finish(nil)
	}})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := client.Post("http://"+addr+"/", "x", bytes.NewReader(make([]byte, 1<<20)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 1<<20 {
			t.Fatalf("got %d bytes, %v", len(b), err)
		}
	}
}

func TestHandlerPanicIsContained(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	addr := startServer(t, &Server{Logger: logger, Handler: func(ex *Exchange) {
		switch ex.Request().Target {
		case "/before":
			panic("boom before head")
		case "/after":
			ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
			ex.Write([]byte("partial"))
			ex.Flush()
			panic("boom after head")
		}
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}})
	// No head written yet: 500 and close.
	c := dial(t, addr)
	c.Write([]byte("GET /before HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n"))
	out, closed := readAllUntilClose(c, 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 500 Internal Server Error\r\n") || !strings.Contains(out, "Connection: close\r\n") ||
		strings.Contains(out, "204") || !closed {
		t.Fatalf("got %q closed=%v, want a single 500 with Connection: close, then close", out, closed)
	}
	// Head written: the response is cut (no terminating chunk) and the connection closed.
	c = dial(t, addr)
	c.Write([]byte("GET /after HTTP/1.1\r\nHost: a\r\n\r\n"))
	out, closed = readAllUntilClose(c, 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") || strings.HasSuffix(out, "0\r\n\r\n") || !closed {
		t.Fatalf("got %q closed=%v, want a truncated chunked 200, then close", out, closed)
	}
	// The server still serves.
	c = dial(t, addr)
	c.Write([]byte("GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"))
	if r := readRawResponse(t, bufio.NewReader(c), false); r.status != 204 {
		t.Fatalf("after the panics got %d, want 204", r.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := logs.String(); strings.Count(got, "http1: handler panic") != 2 || !strings.Contains(got, "boom before head") ||
		!strings.Contains(got, "server_test.go") {
		t.Fatalf("log %q, want two panic records with their stacks", got)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// The upgraded downstream stream half-closes: the client reads end of file after what the
// handler sent, and can still send.
func TestUpgradeCloseWrite(t *testing.T) {
	got := make(chan string, 1)
	addr := startServer(t, &Server{Handler: func(ex *Exchange) {
		resp := &message.Response{Status: 101}
		resp.Header.Add("Upgrade", "echo")
		rw, err := ex.Upgrade(resp)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			return
		}
		defer rw.Close()
		rw.Write([]byte("bye"))
		cw, ok := rw.(interface{ CloseWrite() error })
		if !ok {
			t.Error("the upgraded stream has no CloseWrite")
			return
		}
		if err := cw.CloseWrite(); err != nil {
			t.Errorf("CloseWrite: %v", err)
		}
		b, _ := io.ReadAll(io.LimitReader(rw, 64))
		got <- string(b)
	}})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	c.Write([]byte("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"))
	if r := readRawResponse(t, br, true); r.status != 101 {
		t.Fatalf("got %d", r.status)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if b, err := io.ReadAll(br); err != nil || string(b) != "bye" {
		t.Fatalf("read %q, %v; want %q then end of file", b, err, "bye")
	}
	c.Write([]byte("still here"))
	c.(*net.TCPConn).CloseWrite()
	select {
	case s := <-got:
		if s != "still here" {
			t.Fatalf("handler read %q after its half-close", s)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("handler did not finish")
	}
}
