//go:build linux

package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Hibernating connections wait in the sleeper's epoll set without a goroutine each, and
// still serve their next request.
func TestSleeperHoldsNoGoroutines(t *testing.T) {
	const n = 64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Server{Handler: echoHandler, DrainContext: ctx}
	addr, ended := serveAsync(t, s, ctx, nil)
	base := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	req := "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], readers[i] = c, bufio.NewReader(c)
		io.WriteString(c, req)
		if r := readRawResponse(t, readers[i], false); r.status != 200 {
			t.Fatalf("conn %d: status %d", i, r.status)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+n/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > base+n/4 {
		t.Fatalf("%d goroutines with %d idle connections (base %d): connections did not hibernate", g, n, base)
	}
	for i, c := range conns {
		io.WriteString(c, req)
		if r := readRawResponse(t, readers[i], false); r.status != 200 {
			t.Fatalf("conn %d after hibernating: status %d", i, r.status)
		}
	}
	// A graceful stop closes the hibernating connections at once.
	time.Sleep(4 * hibernateAfter)
	cancel()
	for i := range conns {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d connections ended after the drain", i, n)
		}
	}
	for i, br := range readers {
		conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("conn %d after drain: %v, want EOF", i, err)
		}
	}
}

// The idle timeout still holds for a hibernating connection, and a client that closes while
// its connection sleeps is noticed.
func TestSleeperIdleTimeoutAndClientClose(t *testing.T) {
	// Longer than 2*hibernateAfter, so that the connection hibernates before it expires.
	s := &Server{Handler: echoHandler, IdleTimeout: 3 * hibernateAfter}
	addr, ended := serveAsync(t, s, context.Background(), nil)
	req := "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	br := bufio.NewReader(idle)
	// Timed from before the request: the server's idle timer starts after its response, so
	// however late this test reads the response, the close comes at least a timeout later.
	start := time.Now()
	io.WriteString(idle, req)
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF from the idle timeout", err)
	}
	if d := time.Since(start); d < 3*hibernateAfter-50*time.Millisecond {
		t.Fatalf("closed after %v, before the %v idle timeout", d, 3*hibernateAfter)
	}
	<-ended

	// A client close while hibernating is noticed by itself: with an idle timeout of an hour,
	// only the close can end the connection (no duration to measure on a busy machine).
	addr, ended = serveAsync(t, &Server{Handler: echoHandler, IdleTimeout: time.Hour}, context.Background(), nil)
	gone, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(gone, req)
	if r := readRawResponse(t, bufio.NewReader(gone), false); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	time.Sleep(2 * hibernateAfter) // time to hibernate (longer on a busy machine is fine)
	gone.Close()
	select {
	case <-ended:
	case <-time.After(30 * time.Second): // a failure guard
		t.Fatal("a client close while hibernating was not noticed")
	}
}

// A woken connection is served by a parked worker when there is one: a goroutine that exists
// already, with the stack earlier requests grew, rather than a new one.
func TestSleeperReusesWorkers(t *testing.T) {
	ids := make(chan string, 8)
	s := &Server{Handler: func(ex *Exchange) {
		id, _ := goroutineID()
		ids <- id
		echoHandler(ex)
	}}
	addr, _ := serveAsync(t, s, context.Background(), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	get := func() int {
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
		if r := readRawResponse(t, br, false); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		n, _ := strconv.Atoi(<-ids)
		return n
	}
	get()
	time.Sleep(2 * hibernateAfter)
	get() // woken: a worker serves it, then parks once the connection hibernates again
	time.Sleep(2 * hibernateAfter)
	// A parked worker is a goroutine that exists before the request that wakes the
	// connection again.
	before := allGoroutineIDs()
	if woken := get(); !before[woken] {
		t.Fatalf("second wake ran on goroutine %d, which did not exist before it: no parked worker was reused", woken)
	}
}

// allGoroutineIDs returns the numbers of all goroutines that exist now.
func allGoroutineIDs() map[int]bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	ids := make(map[int]bool)
	for _, line := range strings.Split(string(buf), "\n") {
		if rest, ok := strings.CutPrefix(line, "goroutine "); ok {
			if n, err := strconv.Atoi(strings.SplitN(rest, " ", 2)[0]); err == nil {
				ids[n] = true
			}
		}
	}
	return ids
}
