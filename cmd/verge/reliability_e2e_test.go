package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveUp serves "up" on ln until the returned server is closed.
func serveUp(ln net.Listener) *http.Server {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "up")
	})}
	go srv.Serve(ln)
	return srv
}

// Through the binary, with the default passive settings: a group of one server answers again
// as soon as its origin is back from a restart, only the requests sent while it was down fail,
// and each failure leaves an error-log line (issue 12).
func TestSingleServerOriginRestartE2E(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := serveUp(ln)
	t.Cleanup(func() { srv.Close() })
	p := startVerge(t, addr)
	c := &http.Client{Timeout: 10 * time.Second}

	srv.Close() // the origin goes down
	for i := range 6 {
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Fatalf("origin down, request %d: got %d, want 502", i, resp.StatusCode)
		}
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("reopening the origin on %s: %v", addr, err)
	}
	srv = serveUp(ln)
	if got, err := p.get(c, "/"); err != nil || got != "up" {
		t.Fatalf("origin back: got %q, %v; want 200 \"up\" at once", got, err)
	}
	waitFor(t, "the error-log lines of the 502s", 5*time.Second, func() bool {
		return strings.Count(p.stderr.String(), `msg="upstream request failed" status=502`) == 6
	})

	// A request the HTTP/1 parser rejects is answered with its reason.
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(raw, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("x", 64<<10)+"\r\n\r\n")
	b, _ := io.ReadAll(raw)
	if !strings.HasPrefix(string(b), "HTTP/1.1 431 ") || !strings.Contains(string(b), "request head too large") {
		t.Fatalf("got %q, want a 431 naming the reason", b)
	}
}
