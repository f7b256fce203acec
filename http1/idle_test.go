package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// An idle keep-alive connection waits for its next request without a buffer. Requests that
// are already waiting when the wait starts, ones that arrive later, and a client that closes
// while idle must all be handled.
func TestIdleWaitArrivals(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"

	// Sent before the server even starts waiting.
	io.WriteString(c, req)
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("first request: status %d", r.status)
	}
	// Sent right after the response, racing the server's return to its idle wait.
	for i := 0; i < 50; i++ {
		io.WriteString(c, req)
		if r := readRawResponse(t, br, false); r.status != 200 {
			t.Fatalf("back-to-back request %d: status %d", i, r.status)
		}
	}
	// Sent while the server is certainly waiting.
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, req)
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("late request: status %d", r.status)
	}
	// A close while idle ends the connection on the server side too.
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the client's close: %v, want EOF", err)
	}
}

// goroutineID returns the calling goroutine's number and whether its stack says it was
// started inside http1 (a connection that hibernated and resumed: serverConn.run or the
// sleeper).
func goroutineID() (id string, resumed bool) {
	buf := make([]byte, 8<<10)
	s := string(buf[:runtime.Stack(buf, false)])
	id, _, _ = strings.Cut(strings.TrimPrefix(s, "goroutine "), " ")
	return id, strings.Contains(s, "created by github.com/verge-edge/verge/http1.(*")
}

// A keep-alive connection served by ServeConnAsync moves to a fresh goroutine once idle for
// longer than hibernateAfter: ServeConnAsync returns while the connection stays open, later
// requests are still served, and done runs once when the client closes.
func TestServeConnAsyncHibernates(t *testing.T) {
	type seen struct {
		id      string
		resumed bool
	}
	ids := make(chan seen, 4)
	s := &Server{Handler: func(ex *Exchange) {
		id, resumed := goroutineID()
		ids <- seen{id, resumed}
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	returned, done := make(chan struct{}), make(chan struct{})
	var doneCalls atomic.Int32
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(returned)
			return
		}
		s.ServeConnAsync(context.Background(), c, nil, nil, func() {
			if doneCalls.Add(1) == 1 {
				close(done)
			}
		})
		close(returned)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	io.WriteString(c, req)
	if r := readRawResponse(t, br, false); r.status != 200 || r.body != "ok" {
		t.Fatalf("first response: %d %q", r.status, r.body)
	}
	first := <-ids
	if first.resumed {
		t.Fatal("first request ran on a resumed goroutine")
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConnAsync did not return while the connection was idle")
	}
	select {
	case <-done:
		t.Fatal("done called while the connection is open")
	default:
	}
	io.WriteString(c, req)
	if r := readRawResponse(t, br, false); r.status != 200 || r.body != "ok" {
		t.Fatalf("response after hibernation: %d %q", r.status, r.body)
	}
	second := <-ids
	if second.id == first.id || !second.resumed {
		t.Fatalf("after idling, request ran on goroutine %s (resumed %v), first on %s", second.id, second.resumed, first.id)
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("done not called after the client closed")
	}
	time.Sleep(20 * time.Millisecond)
	if n := doneCalls.Load(); n != 1 {
		t.Fatalf("done called %d times", n)
	}
}

// A hibernated connection is still woken and closed by a graceful stop.
func TestServeConnAsyncHibernatedShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		(&Server{Handler: echoHandler}).ServeConnAsync(ctx, c, nil, nil, func() { close(done) })
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	time.Sleep(4 * hibernateAfter)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("hibernated connection not closed by shutdown")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("client read after shutdown: %v, want EOF", err)
	}
}
