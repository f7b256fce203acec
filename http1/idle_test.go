package http1

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
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
