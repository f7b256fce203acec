package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// deadlineConn counts the deadlines set on it.
type deadlineConn struct {
	net.Conn
	reads, writes int
	last          time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error  { c.reads++; c.last = t; return nil }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { c.writes++; c.last = t; return nil }

func TestLazyDeadline(t *testing.T) {
	c := &deadlineConn{}
	var ld lazyDeadline
	ld.arm(c, false, time.Minute)
	if c.reads != 1 || time.Until(c.last) < 59*time.Second {
		t.Fatalf("first arm: %d sets, deadline in %v", c.reads, time.Until(c.last))
	}
	for range 100 {
		ld.arm(c, false, time.Minute)
	}
	if c.reads != 1 {
		t.Fatalf("re-armed %d times within an eighth of the timeout", c.reads-1)
	}
	ld.arm(c, false, 2*time.Minute)
	if c.reads != 2 {
		t.Fatal("a different length did not re-arm")
	}
	ld.forget()
	ld.arm(c, false, 2*time.Minute)
	if c.reads != 3 {
		t.Fatal("forget did not make the next arm set the deadline")
	}
	// A short timeout re-arms once an eighth of it has passed.
	ld.arm(c, true, 80*time.Millisecond)
	time.Sleep(15 * time.Millisecond)
	ld.arm(c, true, 80*time.Millisecond)
	if c.writes != 2 {
		t.Fatalf("write side: %d sets, want 2 (one after 15ms of an 80ms timeout)", c.writes)
	}
	ld.arm(c, false, 0)
	ld.arm(c, false, 0)
	if c.reads != 4 || !c.last.IsZero() {
		t.Fatalf("clearing: %d sets, deadline %v", c.reads, c.last)
	}
}

// serveOneAsync serves connections accepted on a loopback listener with ServeConnAsync.
func serveOneAsync(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.DrainContext = ctx
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConnAsync(ctx, c, nil, nil, func() {})
		}
	}()
	t.Cleanup(func() { ln.Close(); cancel() })
	return ln.Addr().String()
}

// A request head that stops arriving gets 408 and a close, on a fresh connection and on a
// keep-alive one whose idle wait armed a different deadline.
func TestReadHeaderTimeout(t *testing.T) {
	addr := serveOneAsync(t, &Server{Handler: echoHandler, ReadHeaderTimeout: 200 * time.Millisecond})
	for _, keepAlive := range []bool{false, true} {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		if keepAlive {
			io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
			if r := readRawResponse(t, br, false); r.status != 200 {
				t.Fatalf("first request: %d", r.status)
			}
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		io.WriteString(c, "GET /b HTTP/1.1\r\nHost: a\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if r := readRawResponse(t, br, false); r.status != 408 {
			t.Fatalf("keep-alive %v: status %d, want 408", keepAlive, r.status)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("keep-alive %v: 408 after %v, before the 200ms timeout", keepAlive, d)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("keep-alive %v: after 408: %v, want EOF", keepAlive, err)
		}
		c.Close()
	}
}

// With BodyReadTimeout negative (no limit), a body that arrives later than the deadlines the
// idle wait arms (hibernateAfter) is still read.
func TestBodyWithoutTimeoutAfterIdleWait(t *testing.T) {
	addr := serveOneAsync(t, &Server{Handler: echoHandler, BodyReadTimeout: -1})
	c := dial(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	time.Sleep(10 * time.Millisecond)
	io.WriteString(c, "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
	time.Sleep(3 * hibernateAfter)
	io.WriteString(c, "hello")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := readRawResponse(t, br, false)
	if r.status != 200 || !strings.Contains(r.body, "body=hello") {
		t.Fatalf("late body: %d %q", r.status, r.body)
	}
}

// A body that stops arriving fails the handler's read once BodyReadTimeout passes.
func TestBodyReadTimeout(t *testing.T) {
	addr := serveOneAsync(t, &Server{Handler: echoHandler, BodyReadTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	start := time.Now()
	io.WriteString(c, "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := readRawResponse(t, br, false)
	if r.status != 408 {
		t.Fatalf("stalled body: status %d, want 408", r.status)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("408 after %v, before the 200ms timeout", d)
	}
}
