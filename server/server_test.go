package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/message"
)

// answer replies with the protocol and method it saw, after an optional delay from the
// X-Delay header.
func answer(ex message.ServerExchange) {
	req := ex.Request()
	if d, err := time.ParseDuration(req.Header.Get("X-Delay")); err == nil {
		time.Sleep(d)
	}
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
	}
	body := ex.Conn().Proto + " " + req.Method
	resp := &message.Response{Status: 200, ContentLength: int64(len(body))}
	ex.WriteHeader(resp)
	ex.Write([]byte(body))
	ex.Finish(nil)
}

func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func get(t *testing.T, c *http.Client, method, url string) string {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("x"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Plain-text connections are told apart by their first bytes: HTTP/1 methods that start with
// 'P' must not be mistaken for the HTTP/2 preface.
func TestSniffH2COrHTTP1(t *testing.T) {
	addr := start(t, &Server{Handler: HandlerFunc(answer)})
	for _, m := range []string{"GET", "POST", "PUT", "PATCH"} {
		if got := get(t, http.DefaultClient, m, "http://"+addr+"/"); got != "HTTP/1.1 "+m {
			t.Errorf("HTTP/1 %s: got %q", m, got)
		}
	}
	if got := get(t, h2cClient(), "POST", "http://"+addr+"/"); got != "HTTP/2.0 POST" {
		t.Errorf("h2c prior knowledge: got %q", got)
	}
}

func TestDisableHTTP2(t *testing.T) {
	addr := start(t, &Server{Handler: HandlerFunc(answer), DisableHTTP2: true})
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 5") {
		t.Fatalf("preface with HTTP/2 disabled answered %q, want an HTTP/1.1 error", line)
	}
}

func TestTLSALPN(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert, pool := ts.TLS.Certificates[0], ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	addr := start(t, &Server{Handler: HandlerFunc(answer), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}}
	if got := get(t, h1, "GET", "https://"+addr+"/"); got != "HTTP/1.1 GET" {
		t.Errorf("TLS without h2 in ALPN: got %q", got)
	}
	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}}
	if got := get(t, h2, "GET", "https://"+addr+"/"); got != "HTTP/2.0 GET" {
		t.Errorf("TLS with h2 in ALPN: got %q", got)
	}
}

// Shutdown lets in-flight requests on both protocols finish, and returns once they have.
// The handlers hold each request until the test has seen Shutdown begin (the listener
// closed) and not return; no sleeps, no durations.
func TestShutdownDrainsInFlight(t *testing.T) {
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	var finished atomic.Int32
	s := &Server{Handler: HandlerFunc(func(ex message.ServerExchange) {
		entered <- struct{}{}
		<-release
		answer(ex)
		finished.Add(1)
	})}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &closeNotifyListener{Listener: raw, closed: make(chan struct{})}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	addr := ln.Addr().String()
	type result struct {
		body string
		err  error
	}
	inFlight := func(c *http.Client) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				ch <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- result{string(b), err}
		}()
		return ch
	}
	h1 := inFlight(http.DefaultClient)
	h2 := inFlight(h2cClient())
	guard := time.After(10 * time.Second) // a failure guard, not a wait
	for range 2 {
		select {
		case <-entered:
		case <-guard:
			t.Fatal("the requests never reached the handler")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() {
		err := s.Shutdown(ctx)
		if n := finished.Load(); n != 2 && err == nil {
			err = fmt.Errorf("Shutdown returned with %d of 2 in-flight handlers finished", n)
		}
		shutdown <- err
	}()
	select {
	case <-ln.closed:
	case <-guard:
		t.Fatal("Shutdown never closed the listener")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while two requests were still in the handler", err)
	default:
	}
	close(release)
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for name, ch := range map[string]chan result{"HTTP/1.1": h1, "HTTP/2": h2} {
		r := <-ch
		if r.err != nil || !strings.HasSuffix(r.body, " GET") {
			t.Errorf("%s in-flight request: %q %v, want completed", name, r.body, r.err)
		}
	}
	if n := s.ActiveConns(); n != 0 {
		t.Errorf("%d connections still open after Shutdown", n)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after Shutdown")
	}
}

// closeNotifyListener closes its channel when the server closes it.
type closeNotifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *closeNotifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// Shutdown closes idle keep-alive connections (after the drain grace: http1.Server.DrainIdleGrace).
func TestShutdownClosesIdle(t *testing.T) {
	s := &Server{Handler: HandlerFunc(answer)}
	addr := start(t, s)
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: read err %v, want EOF", err)
	}
}

func TestSetHandlerSwapsForNewRequests(t *testing.T) {
	s := &Server{Handler: HandlerFunc(answer)}
	addr := start(t, s)
	var calls atomic.Int64
	s.SetHandler(HandlerFunc(func(ex message.ServerExchange) {
		calls.Add(1)
		ex.WriteHeader(&message.Response{Status: 204})
		ex.Finish(nil)
	}))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || calls.Load() != 1 {
		t.Fatalf("status %d calls %d, want 204 from the new handler", resp.StatusCode, calls.Load())
	}
}

func TestMaxConns(t *testing.T) {
	s := &Server{Handler: HandlerFunc(answer), MaxConns: 1}
	addr := start(t, s)
	c1, _ := net.Dial("tcp", addr)
	defer c1.Close()
	io.WriteString(c1, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c1)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	// The second connection is accepted by the kernel but not served while the first is open.
	c2, _ := net.Dial("tcp", addr)
	defer c2.Close()
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("second connection served while MaxConns=1 was in use")
	}
	c1.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil {
		t.Fatalf("second connection after the first closed: %v", err)
	}
}
