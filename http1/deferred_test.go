package http1

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// A client that pipelines while its first request is being served (the second request
// arrives unseen before the deferred first response is written) is still answered promptly:
// the wait after a deferred write reads once after recheckAfter. Without that read the second
// request would wait for the connection to hibernate (hibernateAfter, 50ms) or worse.
func TestDeferredWritePipelinedDuringHandler(t *testing.T) {
	s := &Server{Handler: func(ex *Exchange) {
		if ex.Request().Target == "/slow" {
			time.Sleep(30 * time.Millisecond)
		}
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
		ex.Write([]byte("ok"))
		ex.Finish(nil)
	}}
	addr := serveOneAsync(t, s)
	c := dial(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	// Warm up: one plain request, so that the next ones run on a connection in its steady
	// state.
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(10 * time.Millisecond) // the server is inside the slow handler now
	io.WriteString(c, "GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("slow response: status %d", r.status)
	}
	first := time.Now()
	if r := readRawResponse(t, br, false); r.status != 200 {
		t.Fatalf("pipelined response: status %d", r.status)
	}
	if d := time.Since(first); d > 40*time.Millisecond && !raceEnabled {
		t.Fatalf("pipelined request answered %v after the previous one: the recheck did not find it", d)
	}
	// The connection is now known to pipeline; requests sent together are answered.
	io.WriteString(c, "GET /c HTTP/1.1\r\nHost: a\r\n\r\nGET /d HTTP/1.1\r\nHost: a\r\n\r\n")
	for i := 0; i < 2; i++ {
		if r := readRawResponse(t, br, false); r.status != 200 {
			t.Fatalf("pipelined pair %d: status %d", i, r.status)
		}
	}
}

// A deferred response the socket cannot take at once (the client is not reading) is
// finished under the write deadline, whole, and the connection serves on.
func TestDeferredWriteSocketFull(t *testing.T) {
	body := strings.Repeat("x", 4<<20)
	s := &Server{Handler: func(ex *Exchange) {
		if ex.Request().Target == "/big" {
			ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(body))})
			io.WriteString(ex, body)
		} else {
			ex.WriteHeader(&message.Response{Status: 200, ContentLength: 2})
			ex.Write([]byte("ok"))
		}
		ex.Finish(nil)
	}}
	addr := serveOneAsync(t, s)
	c := dial(t, addr)
	defer c.Close()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // let the server fill the socket
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := readRawResponse(t, br, false)
	if r.status != 200 || len(r.body) != len(body) {
		t.Fatalf("big response: status %d, %d bytes, want %d", r.status, len(r.body), len(body))
	}
	io.WriteString(c, "GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
	if r := readRawResponse(t, br, false); r.status != 200 || r.body != "ok" {
		t.Fatalf("after the big response: %d %q", r.status, r.body)
	}
}
