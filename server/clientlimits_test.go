package server

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/verge-edge/verge/message"
)

// dialFrom connects to addr from the loopback address local (any of 127.0.0.0/8).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a GET on c and returns the status, or 0 when the connection was closed
// instead.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a failure guard only
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestConnsPerClient holds 100 connections from one address with a cap of 100: more from it
// are shed (answered 503 when Respond), another address is served, and a closed connection
// frees a place.
func TestConnsPerClient(t *testing.T) {
	var shed sync.Map
	s := &Server{Handler: HandlerFunc(answer), DisableHTTP2: true,
		Limits:   ClientLimits{MaxConnsPerClient: 100, Respond: true},
		ShedHook: func(r string) { n, _ := shed.LoadOrStore(r, new(int)); *(n.(*int))++ }}
	addr := start(t, s)
	var held []net.Conn
	for i := range 100 {
		c := dialFrom(t, "127.0.0.2", addr)
		if st := roundTrip(t, c, bufio.NewReader(c)); st != 200 {
			t.Fatalf("connection %d: status %d, want 200", i, st)
		}
		held = append(held, c)
	}
	for i := range 50 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue // reset before the dial completed: shed
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
				t.Fatalf("connection %d over the cap: %d %v, want 503 with Retry-After", 100+i, resp.StatusCode, resp.Header)
			}
		} else if strings.Contains(err.Error(), "timeout") {
			t.Fatalf("connection %d over the cap was kept open", 100+i)
		}
	}
	other := dialFrom(t, "127.0.0.3", addr)
	if st := roundTrip(t, other, bufio.NewReader(other)); st != 200 {
		t.Fatalf("another address: status %d, want 200", st)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.ActiveConns() > 100 { // 99 held + the other address
		if time.Now().After(deadline) {
			t.Fatalf("the closed connection was not released: %d active", s.ActiveConns())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := dialFrom(t, "127.0.0.2", addr)
	if st := roundTrip(t, c, bufio.NewReader(c)); st != 200 {
		t.Fatalf("after one closed: status %d, want 200", st)
	}
	if n, ok := shed.Load(ShedConnsPerClient); !ok || *(n.(*int)) != 50 {
		t.Fatalf("ShedHook: %v conns_per_client, want 50", n)
	}
}

// TestRequestsPerClient holds two requests of one client in the handler with a cap of 2: a
// third, on another connection, is answered 429; another client is served.
func TestRequestsPerClient(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	s := &Server{DisableHTTP2: true, Limits: ClientLimits{MaxRequestsPerClient: 2},
		Handler: HandlerFunc(func(ex message.ServerExchange) {
			if ex.Request().Target == "/hold" {
				entered <- struct{}{}
				<-release
			}
			answer(ex)
		})}
	addr := start(t, s)
	var wg sync.WaitGroup
	for range 2 {
		c := dialFrom(t, "127.0.0.4", addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
			http.ReadResponse(bufio.NewReader(c), nil)
		}()
	}
	<-entered
	<-entered
	c := dialFrom(t, "127.0.0.4", addr)
	br := bufio.NewReader(c)
	if st := roundTrip(t, c, br); st != 429 {
		t.Fatalf("third concurrent request: %d, want 429", st)
	}
	o := dialFrom(t, "127.0.0.5", addr)
	if st := roundTrip(t, o, bufio.NewReader(o)); st != 200 {
		t.Fatalf("another client: %d, want 200", st)
	}
	close(release)
	wg.Wait()
	// The 429 kept the connection usable, and the finished requests freed their places (when
	// their handlers returned, just after their clients read the responses: retry until then).
	deadline := time.Now().Add(10 * time.Second) // a failure guard for a busy machine
	for {
		st := roundTrip(t, c, br)
		if st == 200 {
			break
		}
		if st != 429 || time.Now().After(deadline) {
			t.Fatalf("after the held requests ended: %d, want 200", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShedOverMaxConns sheds connections beyond MaxConns instead of queueing them.
func TestShedOverMaxConns(t *testing.T) {
	s := &Server{Handler: HandlerFunc(answer), DisableHTTP2: true, MaxConns: 2, Limits: ClientLimits{ShedOverMaxConns: true}}
	addr := start(t, s)
	for range 2 {
		c := dialFrom(t, "127.0.0.6", addr)
		if st := roundTrip(t, c, bufio.NewReader(c)); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}
	if c, err := d.Dial("tcp", addr); err == nil {
		defer c.Close()
		if st := roundTrip(t, c, bufio.NewReader(c)); st != 0 {
			t.Fatalf("connection over max_conns: status %d, want it closed", st)
		}
	}
}

func TestClientKeyAndExempt(t *testing.T) {
	g := newClientGuard(ClientLimits{MaxConnsPerClient: 1, IPv4Prefix: 24, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	a, reason := g.admit(netip.MustParseAddr("192.0.2.1"))
	if reason != "" || a != netip.MustParseAddr("192.0.2.0") {
		t.Fatalf("first: %v %q", a, reason)
	}
	if _, reason := g.admit(netip.MustParseAddr("192.0.2.200")); reason != ShedConnsPerClient {
		t.Fatalf("same /24: %q, want shed", reason)
	}
	if _, reason := g.admit(netip.MustParseAddr("::ffff:192.0.2.9")); reason != ShedConnsPerClient {
		t.Fatalf("same /24 as a mapped address: %q, want shed", reason)
	}
	for range 3 {
		if _, reason := g.admit(netip.MustParseAddr("10.1.2.3")); reason != "" {
			t.Fatalf("exempt peer shed: %q", reason)
		}
	}
	g.release(a)
	if _, reason := g.admit(netip.MustParseAddr("192.0.2.7")); reason != "" {
		t.Fatalf("after release: %q", reason)
	}
}

// TestJA4OnConnInfo checks that TLS connections carry their hello's JA4 fingerprint to the
// handler, for HTTP/1.1 and HTTP/2, and that plain text carries none.
func TestJA4OnConnInfo(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert, pool := ts.TLS.Certificates[0], ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	echo := HandlerFunc(func(ex message.ServerExchange) {
		body := ex.Conn().JA4
		ex.WriteHeader(&message.Response{Status: 200, ContentLength: int64(len(body))})
		io.WriteString(ex, body)
		ex.Finish(nil)
	})
	addr := start(t, &Server{Handler: echo, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com", NextProtos: []string{"http/1.1"}}}}
	if got := get(t, h1, "GET", "https://"+addr+"/"); !strings.HasPrefix(got, "t13d") || got[8:10] != "h1" || len(got) != 36 {
		t.Errorf("HTTP/1.1 over TLS: JA4 %q", got)
	}
	h2 := &http.Client{Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"}}}
	if got := get(t, h2, "GET", "https://"+addr+"/"); !strings.HasPrefix(got, "t13d") || got[8:10] != "h2" {
		t.Errorf("HTTP/2: JA4 %q", got)
	}
	plain := start(t, &Server{Handler: echo})
	if got := get(t, http.DefaultClient, "GET", "http://"+plain+"/"); got != "" {
		t.Errorf("plain text: JA4 %q", got)
	}
}

// TestShedForOverload sheds new connections of a client already holding two while
// overloaded, and admits a client holding none.
func TestShedForOverload(t *testing.T) {
	overloaded := true
	g := newClientGuard(ClientLimits{ShedForOverload: func(held int) bool { return overloaded && held >= 2 }})
	busy := netip.MustParseAddr("192.0.2.1")
	var got []netip.Addr
	for range 2 {
		a, reason := g.admit(busy)
		if reason != "" {
			t.Fatalf("first connections: %q", reason)
		}
		got = append(got, a)
	}
	if _, reason := g.admit(busy); reason != ShedOverload {
		t.Fatalf("third connection while overloaded: %q, want %q", reason, ShedOverload)
	}
	if _, reason := g.admit(netip.MustParseAddr("192.0.2.99")); reason != "" {
		t.Fatalf("a new client while overloaded: %q", reason)
	}
	overloaded = false
	if _, reason := g.admit(busy); reason != "" {
		t.Fatalf("third connection once calm: %q", reason)
	}
}

// TestBodyBytesPerClient holds a request with a 600 KiB body of one client while its second
// request of 600 KiB arrives: over the 1 MiB cap, it is answered 429 before its body is
// read, and the connection closes; a small request of the same client and a request of
// another client fit.
func TestBodyBytesPerClient(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	s := &Server{DisableHTTP2: true, Limits: ClientLimits{MaxBodyBytesPerClient: 1 << 20},
		Handler: HandlerFunc(func(ex message.ServerExchange) {
			if ex.Request().Target == "/hold" {
				entered <- struct{}{}
				<-release
			}
			answer(ex)
		})}
	addr := start(t, s)
	post := func(c net.Conn, target string, n int) {
		io.WriteString(c, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n")
	}
	held := dialFrom(t, "127.0.0.8", addr)
	post(held, "/hold", 600<<10)
	done := make(chan int, 1)
	go func() {
		held.Write(make([]byte, 600<<10))
		resp, err := http.ReadResponse(bufio.NewReader(held), nil)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	c := dialFrom(t, "127.0.0.8", addr)
	post(c, "/", 600<<10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a failure guard only
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || !resp.Close {
		t.Fatalf("second body over the cap: %d (close %v), want 429 and the connection closed", resp.StatusCode, resp.Close)
	}
	small := dialFrom(t, "127.0.0.8", addr)
	post(small, "/", 1000)
	small.Write(make([]byte, 1000))
	if resp, err := http.ReadResponse(bufio.NewReader(small), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a small body within the cap: %v %v", resp, err)
	}
	other := dialFrom(t, "127.0.0.9", addr)
	post(other, "/", 600<<10)
	other.Write(make([]byte, 600<<10))
	if resp, err := http.ReadResponse(bufio.NewReader(other), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("another client: %v %v", resp, err)
	}
	close(release)
	if st := <-done; st != 200 {
		t.Fatalf("the held request: %d", st)
	}
	// The held request's bytes are released when its handler returns, just after the
	// client read its response: retry while that has not happened yet.
	deadline := time.Now().Add(10 * time.Second) // a failure guard for a busy machine
	for {
		again := dialFrom(t, "127.0.0.8", addr)
		post(again, "/", 600<<10)
		again.Write(make([]byte, 600<<10))
		resp, err := http.ReadResponse(bufio.NewReader(again), nil)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if err != nil || resp.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("after the held request ended: %v %v", resp, err)
		}
		again.Close()
		time.Sleep(5 * time.Millisecond)
	}
}
