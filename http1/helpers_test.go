package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// serveLoopback accepts loopback connections until the test ends and hands each to serve on a
// goroutine of its own; serve calls done once it is finished with the connection, which may be
// after it returned (ServeConnAsync). The test's cleanup closes the listener and waits for
// every done; cleanups registered after this one (such as a context's cancel) run before.
func serveLoopback(t testing.TB, serve func(c net.Conn, done func())) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go serve(c, wg.Done)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startServer serves s on a loopback listener until the test ends and returns its address.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := serveLoopback(t, func(c net.Conn, done func()) {
		defer done()
		s.ServeConn(ctx, c, nil)
	})
	t.Cleanup(cancel)
	return addr
}

// serveAsync serves s with ServeConnAsync, as package server does, on a loopback listener
// until the test ends, with each accepted connection passed through wrap (nil: none). ended
// receives once per connection that ended.
func serveAsync(t testing.TB, s *Server, ctx context.Context, wrap func(net.Conn) net.Conn) (addr string, ended chan struct{}) {
	t.Helper()
	ended = make(chan struct{}, 1024)
	addr = serveLoopback(t, func(c net.Conn, done func()) {
		if wrap != nil {
			c = wrap(c)
		}
		s.ServeConnAsync(ctx, c, nil, nil, func() { ended <- struct{}{}; done() })
	})
	return addr, ended
}

// echoHandler reads the whole request body and answers 200 with a description of the
// request and the body. Body errors become the status their fault maps to.
func echoHandler(ex *Exchange) {
	req := ex.Request()
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			fe := fault.As(err)
			ex.WriteHeader(&message.Response{Status: fe.StatusCode()})
			ex.Finish(nil)
			return
		}
		body = b
	}
	var sb strings.Builder
	sb.WriteString(req.Method + " " + req.Target + " " + req.Proto + " host=" + req.Authority + "\n")
	for _, f := range req.Header.Fields() {
		sb.WriteString(f.Name + ": " + f.Value + "\n")
	}
	sb.WriteString("body=" + string(body) + "\n")
	for _, f := range req.Trailer.Fields() {
		sb.WriteString("trailer " + f.Name + ": " + f.Value + "\n")
	}
	out := sb.String()
	resp := &message.Response{Status: 200, ContentLength: int64(len(out))}
	resp.Header.Add("Content-Type", "text/plain")
	ex.WriteHeader(resp)
	ex.Write([]byte(out))
	ex.Finish(nil)
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// readAllUntilClose reads until the server closes the connection and reports whether it did
// (rather than the deadline expiring).
func readAllUntilClose(c net.Conn, wait time.Duration) (string, bool) {
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return string(b), false
		}
	}
	return string(b), true
}

// rawResponse is a response read with a tiny independent parser.
type rawResponse struct {
	status  int
	header  map[string]string
	body    string
	trailer map[string]string
}

func readRawResponse(t testing.TB, br *bufio.Reader, head bool) rawResponse {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading status line: %v", err)
	}
	var r rawResponse
	r.header = map[string]string{}
	if len(line) < 12 {
		t.Fatalf("short status line %q", line)
	}
	for _, c := range line[9:12] {
		r.status = r.status*10 + int(c-'0')
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading header: %v", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		k, v, _ := strings.Cut(l, ":")
		r.header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	if head || r.status == 204 || r.status == 304 || r.status < 200 {
		return r
	}
	switch {
	case r.header["transfer-encoding"] == "chunked":
		var sb strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("chunk size: %v", err)
			}
			var n int
			for _, c := range strings.TrimRight(l, "\r\n") {
				n = n * 16
				switch {
				case c >= '0' && c <= '9':
					n += int(c - '0')
				case c >= 'a' && c <= 'f':
					n += int(c-'a') + 10
				}
			}
			if n == 0 {
				break
			}
			buf := make([]byte, n+2)
			io.ReadFull(br, buf)
			sb.Write(buf[:n])
		}
		r.trailer = map[string]string{}
		for {
			l, _ := br.ReadString('\n')
			l = strings.TrimRight(l, "\r\n")
			if l == "" {
				break
			}
			k, v, _ := strings.Cut(l, ":")
			r.trailer[strings.ToLower(k)] = strings.TrimSpace(v)
		}
		r.body = sb.String()
	case r.header["content-length"] != "":
		var n int
		for _, c := range r.header["content-length"] {
			n = n*10 + int(c-'0')
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatalf("body: %v", err)
		}
		r.body = string(buf)
	default:
		b, _ := io.ReadAll(br)
		r.body = string(b)
	}
	return r
}
