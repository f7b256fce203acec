package http1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// drainServer serves s with ServeConnAsync on a loopback listener, as package server does.
// drain starts the graceful stop and returns once every connection has been told of it;
// ended receives once per connection that ended.
func drainServer(t *testing.T, s *Server) (addr string, drain func(), ended chan struct{}) {
	t.Helper()
	return drainServerWrap(t, s, nil)
}

// drainServerWrap is drainServer with each accepted connection passed through wrap (nil: none).
func drainServerWrap(t *testing.T, s *Server, wrap func(net.Conn) net.Conn) (addr string, drain func(), ended chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithCancel(context.Background())
	s.DrainContext = dctx
	told := make(chan struct{})
	s.drains.after = func() { close(told) }
	addr, ended = serveAsync(t, s, ctx, wrap)
	t.Cleanup(func() { dcancel(); cancel() })
	drain = func() {
		dcancel()
		select {
		case <-told:
		case <-time.After(10 * time.Second):
			t.Fatal("the drain did not reach the connections")
		}
	}
	return addr, drain, ended
}

// longGrace is a drain grace no test request can miss, however slow the machine: the tests
// below never wait for it to pass.
const longGrace = time.Minute

func getReq(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n" }

// servedConn dials addr and has one request answered, a plain keep-alive response, on the
// connection, which then stays open.
func servedConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, getReq("/first"))
	if r := readRawResponse(t, br, false); r.status != 200 || r.header["connection"] != "" {
		t.Fatalf("first request: %d %v, want 200 without Connection", r.status, r.header)
	}
	return c, br
}

// wantCleanEnd reads from the client side until the server's end of the connection: it must
// be an end of file (FIN), not a reset and not the guard deadline.
func wantCleanEnd(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(br)
	switch {
	case len(rest) > 0:
		t.Fatalf("unexpected bytes after the last response: %q", rest)
	case err != nil:
		t.Fatalf("connection end: %v, want a clean end of file", err)
	}
}

// wantClosingAnswer sends a GET for path on c, whose server drains, and checks that it is
// answered with "Connection: close" and that the connection then ends with a FIN.
func wantClosingAnswer(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	io.WriteString(c, getReq(path))
	r := readRawResponse(t, br, false)
	if r.status != 200 || !strings.HasPrefix(r.body, "GET "+path+" ") || r.header["connection"] != "close" {
		t.Fatalf("%s during the drain: %d %v %q, want 200 with Connection: close", path, r.status, r.header, r.body)
	}
	wantCleanEnd(t, c, br)
}

func waitEnded(t *testing.T, ended chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("connection did not end after the drain")
	}
}

// A request whose bytes arrive after the drain began, on a keep-alive connection that was idle
// then, is answered, with "Connection: close", and only then is the connection closed. This is
// the request a client sends right after a response, before it can know of the stop.
func TestDrainServesRequestArrivingAfterDrain(t *testing.T) {
	addr, drain, ended := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: longGrace})
	c, br := servedConn(t, addr)
	drain()
	wantClosingAnswer(t, c, br, "/after-drain")
	waitEnded(t, ended)
}

// opaqueConn hides the socket, as crypto/tls does: the idle wait is then a one-byte read.
type opaqueConn struct{ net.Conn }

// The same on a connection whose socket the server cannot reach (TLS).
func TestDrainServesRequestArrivingAfterDrainOpaqueConn(t *testing.T) {
	wrap := func(c net.Conn) net.Conn { return opaqueConn{c} }
	addr, drain, ended := drainServerWrap(t, &Server{Handler: echoHandler, DrainIdleGrace: longGrace}, wrap)
	c, br := servedConn(t, addr)
	drain()
	wantClosingAnswer(t, c, br, "/after-drain")
	waitEnded(t, ended)
}

// A connection that stays idle through the grace is closed with a FIN.
func TestDrainClosesIdleConnectionAfterGrace(t *testing.T) {
	addr, drain, ended := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: 20 * time.Millisecond})
	c, br := servedConn(t, addr)
	drain()
	wantCleanEnd(t, c, br)
	waitEnded(t, ended)
}

// blockingHandler answers /slow in two steps: with headFirst it writes the head and a first
// chunk before it tells started and waits for release, else it waits before writing anything.
// Other paths are echoed.
type blockingHandler struct {
	headFirst        bool
	started, release chan struct{}
}

func (h *blockingHandler) serve(ex *Exchange) {
	if ex.Request().Target != "/slow" {
		echoHandler(ex)
		return
	}
	if h.headFirst {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write([]byte("part1-"))
		ex.Flush()
	}
	close(h.started)
	<-h.release
	if !h.headFirst {
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: -1})
		ex.Write([]byte("part1-"))
	}
	ex.Write([]byte("part2"))
	ex.Finish(nil)
}

// drainDuringSlow sends /slow to a blockingHandler (with headFirst as given) on a server with
// the given drain grace, starts the drain while the handler waits, and then lets it finish.
func drainDuringSlow(t *testing.T, headFirst bool, grace time.Duration) (net.Conn, *bufio.Reader, chan struct{}) {
	t.Helper()
	h := &blockingHandler{headFirst: headFirst, started: make(chan struct{}), release: make(chan struct{})}
	addr, drain, ended := drainServer(t, &Server{Handler: h.serve, DrainIdleGrace: grace})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, getReq("/slow"))
	<-h.started
	drain()
	close(h.release)
	return c, br, ended
}

// A response whose head was sent before the drain began cannot say "Connection: close". The
// connection is not closed under the client after it: it completes, and the client's next
// request (sent as soon as it read the response) is answered with "Connection: close".
func TestDrainAfterHeadSentServesNextRequest(t *testing.T) {
	c, br, ended := drainDuringSlow(t, true, longGrace)
	r := readRawResponse(t, br, false)
	if r.status != 200 || r.body != "part1-part2" {
		t.Fatalf("response in progress at the drain: %d %q", r.status, r.body)
	}
	if r.header["connection"] != "" {
		t.Fatalf("head sent before the drain has Connection %q", r.header["connection"])
	}
	wantClosingAnswer(t, c, br, "/next")
	waitEnded(t, ended)
}

// The same connection, when the client sends nothing more, ends cleanly after the response
// and the grace: a complete response, then end of file.
func TestDrainAfterHeadSentEndsCleanly(t *testing.T) {
	c, br, ended := drainDuringSlow(t, true, 20*time.Millisecond)
	if r := readRawResponse(t, br, false); r.status != 200 || r.body != "part1-part2" {
		t.Fatalf("response in progress at the drain: %d %q", r.status, r.body)
	}
	wantCleanEnd(t, c, br)
	waitEnded(t, ended)
}

// A response that had not started when the drain began says "Connection: close" and the
// connection closes after it.
func TestDrainBeforeHeadSentSaysClose(t *testing.T) {
	c, br, ended := drainDuringSlow(t, false, longGrace)
	r := readRawResponse(t, br, false)
	if r.status != 200 || r.body != "part1-part2" || r.header["connection"] != "close" {
		t.Fatalf("got %d %v %q, want the whole body with Connection: close", r.status, r.header, r.body)
	}
	wantCleanEnd(t, c, br)
	waitEnded(t, ended)
}

// Pipelined requests that arrive during the drain: the first is answered with
// "Connection: close"; the connection then ends with a FIN, not a reset that could destroy
// that response in the client's buffer.
func TestDrainPipelinedGetsCloseAndCleanEnd(t *testing.T) {
	addr, drain, ended := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: longGrace})
	c, br := servedConn(t, addr)
	drain()
	io.WriteString(c, getReq("/a")+getReq("/b"))
	r := readRawResponse(t, br, false)
	if r.status != 200 || !strings.HasPrefix(r.body, "GET /a ") || r.header["connection"] != "close" {
		t.Fatalf("first pipelined request: %d %v %q", r.status, r.header, r.body)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		if errors.Is(err, syscall.ECONNRESET) {
			t.Fatal("connection reset after the last response")
		}
		t.Fatalf("after the last response: %v, want end of file", err)
	}
	c.Close()
	waitEnded(t, ended)
}

// Without a grace (negative), idle connections close as soon as the drain begins.
func TestDrainNoGraceClosesIdleAtOnce(t *testing.T) {
	addr, drain, ended := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: -1})
	c, br := servedConn(t, addr)
	drain()
	waitEnded(t, ended)
	wantCleanEnd(t, c, br)
}

// Many keep-alive clients sending back-to-back requests through a drain lose none: every
// request is answered, and each connection ends only after a response that said
// "Connection: close" (or before any request was sent on it).
func TestDrainUnderLoadLosesNoRequest(t *testing.T) {
	const clients, perClient = 16, 200
	addr, drain, _ := drainServer(t, &Server{Handler: echoHandler, DrainIdleGrace: longGrace})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	sent := make(chan struct{}, clients*perClient)
	fail := func(f string) {
		mu.Lock()
		failures = append(failures, f)
		mu.Unlock()
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				fail(err.Error())
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for n := range perClient {
				if _, err := io.WriteString(c, getReq("/")); err != nil {
					fail("client " + strconv.Itoa(i) + " write: " + err.Error())
					return
				}
				line, err := br.ReadString('\n')
				if err != nil {
					fail("client " + strconv.Itoa(i) + " request " + strconv.Itoa(n) + ": " + err.Error())
					return
				}
				if !strings.HasPrefix(line, "HTTP/1.1 200 ") {
					fail("status line " + line)
					return
				}
				closing, length := false, 0
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						fail("head: " + err.Error())
						return
					}
					if l == "\r\n" {
						break
					}
					k, v, _ := strings.Cut(strings.TrimRight(l, "\r\n"), ": ")
					switch strings.ToLower(k) {
					case "connection":
						closing = v == "close"
					case "content-length":
						for _, d := range v {
							length = length*10 + int(d-'0')
						}
					}
				}
				if _, err := br.Discard(length); err != nil {
					fail("body: " + err.Error())
					return
				}
				sent <- struct{}{}
				if closing {
					return // the server said so: this connection is done
				}
			}
		}()
	}
	// Drain once a quarter of the requests were answered, with every client mid-stream.
	for range clients * perClient / 4 {
		<-sent
	}
	drain()
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}
