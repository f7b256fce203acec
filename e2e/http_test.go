package e2e

import (
	"bufio"
	"bytes"
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

	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// echoOrigin answers with what it received, so tests can see what the proxy sent.
func echoOrigin(t *testing.T) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin-Method", r.Method)
		w.Header().Set("X-Origin-Host", r.Host)
		w.Header().Set("X-Origin-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Origin-Via", r.Header.Get("Via"))
		w.Header().Set("X-Origin-Proto", r.Proto)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestHTTP1ProxyEndToEnd(t *testing.T) {
	origin := echoOrigin(t)
	v := startVerge(t, peerFor(origin), nil)
	resp, err := http.Post("http://"+v.addr+"/submit?x=1", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "POST /submit?x=1 payload" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	checks := map[string]string{
		"X-Origin-Host": v.addr,
		"X-Origin-XFF":  "127.0.0.1",
		"X-Origin-Via":  "1.1 verge",
		"Via":           "1.1 verge",
	}
	for k, want := range checks {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// A thousand requests, each on its own short client connection, reach the origin over a
// handful of pooled upstream connections.
func TestShortClientConnsReuseUpstream(t *testing.T) {
	var originConns atomic.Int64
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	origin.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			originConns.Add(1)
		}
	}
	origin.Start()
	t.Cleanup(origin.Close)
	v := startVerge(t, peerFor(origin), nil)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 4)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := client.Get("http://" + v.addr + "/")
			if err != nil {
				failed.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "ok" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), n)
	}
	st := v.transport.Stats()
	t.Logf("origin connections %d for %d requests; transport stats %+v", originConns.Load(), n, st)
	if c := originConns.Load(); c > 8 {
		t.Fatalf("origin saw %d connections for %d requests; want a handful (<= 8)", c, n)
	}
	if st.ReusedRequests < n-8 {
		t.Fatalf("reused requests %d, want >= %d", st.ReusedRequests, n-8)
	}
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

func TestH2CDownstreamToHTTP1Origin(t *testing.T) {
	origin := echoOrigin(t)
	v := startVerge(t, peerFor(origin), nil)
	client := h2cClient()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := client.Post(fmt.Sprintf("http://%s/s/%d", v.addr, i), "text/plain", strings.NewReader("b"))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(body) != fmt.Sprintf("POST /s/%d b", i) || resp.Header.Get("X-Origin-Via") != "2 verge" {
				errs <- fmt.Errorf("stream %d: proto %s body %q via %q", i, resp.Proto, body, resp.Header.Get("X-Origin-Via"))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTLSH2DownstreamToTLSH2Origin(t *testing.T) {
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin-Proto", r.Proto)
		w.Header().Set("Trailer", "X-Sum")
		fmt.Fprintf(w, "%s %s", r.Method, body)
		w.Header().Set("X-Sum", fmt.Sprint(len(body)))
	}))
	origin.EnableHTTP2 = true
	origin.StartTLS()
	t.Cleanup(origin.Close)
	originPool := origin.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	peer := &upstream.Peer{
		Address:  origin.Listener.Addr().String(),
		Protocol: upstream.HTTP2,
		TLS:      &upstream.TLSOptions{ServerName: "example.com", RootCAs: originPool},
	}
	serverTLS, clientPool := tlsPair(t)
	v := startVerge(t, peer, serverTLS)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: clientPool, ServerName: "example.com"},
		ForceAttemptHTTP2: true,
	}}
	resp, err := client.Post("https://"+v.addr+"/", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("downstream proto %s, want HTTP/2", resp.Proto)
	}
	if got := resp.Header.Get("X-Origin-Proto"); got != "HTTP/2.0" {
		t.Errorf("upstream proto %q, want HTTP/2.0", got)
	}
	if string(body) != "POST hello" {
		t.Errorf("body %q", body)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "5" {
		t.Errorf("trailer X-Sum %q, want 5", got)
	}
}

// Server-sent events reach the client as they are produced, not when the response ends.
func TestStreamedResponseIsFlushed(t *testing.T) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(origin.Close)
	t.Cleanup(func() { close(release) })
	v := startVerge(t, peerFor(origin), nil)
	resp, err := http.Get("http://" + v.addr + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	got := make(chan string, 1)
	go func() {
		n, _ := io.ReadAtLeast(resp.Body, buf, len("data: first\n\n"))
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		if s != "data: first\n\n" {
			t.Fatalf("first event %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first event not delivered while the origin keeps the response open")
	}
}

func TestUpstreamDownIs502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	v := startVerge(t, &upstream.Peer{Address: addr}, nil)
	resp, err := http.Get("http://" + v.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

func TestConnectRefusedByDefault(t *testing.T) {
	origin := echoOrigin(t)
	v := startVerge(t, peerFor(origin), nil)
	c, err := net.Dial("tcp", v.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 12)
	io.ReadFull(c, line)
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 405")) {
		t.Fatalf("CONNECT answered %q, want 405", line)
	}
}

// With AllowConnect, a CONNECT goes to the chosen peer (an upstream forward proxy here) and,
// once it answers 2xx, bytes flow both ways.
func TestConnectTunnelWhenAllowed(t *testing.T) {
	// A minimal upstream proxy: answers CONNECT with 200 and then echoes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		seen <- line
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
		io.Copy(c, br)
	}()

	tr := &upstream.Transport{}
	defer tr.Close()
	p := &proxy.Proxy[struct{}]{Phases: staticPhases{peer: &upstream.Peer{Address: ln.Addr().String()}}, Transport: tr, AllowConnect: true}
	srv := &server.Server{Handler: p}
	vl, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(vl)
	defer srv.Close()

	c, err := net.Dial("tcp", vl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
	br := bufio.NewReader(c)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("CONNECT answered %q", status)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	io.WriteString(c, "ping through the tunnel")
	got := make([]byte, len("ping through the tunnel"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping through the tunnel" {
		t.Fatalf("tunnel echo %q %v", got, err)
	}
	if line := <-seen; line != "CONNECT db.internal:5432 HTTP/1.1\r\n" {
		t.Fatalf("upstream saw %q", line)
	}
}

// connectThrough starts an upstream forward proxy running serve on its tunnels and Verge in
// front of it with tunnelIdle, and returns a client connection past the CONNECT exchange.
func connectThrough(t *testing.T, tunnelIdle time.Duration, serve func(c net.Conn, br *bufio.Reader)) (net.Conn, *bufio.Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second)) // a failure guard
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if l == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
		serve(c, br)
	}()
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	p := &proxy.Proxy[struct{}]{Phases: staticPhases{peer: &upstream.Peer{Address: ln.Addr().String()}},
		Transport: tr, AllowConnect: true, TunnelIdleTimeout: tunnelIdle}
	srv := &server.Server{Handler: p}
	vl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(vl)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", vl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
	br := bufio.NewReader(c)
	if status, _ := br.ReadString('\n'); !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("CONNECT answered %q", status)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	return c, br
}

// A client that half-closes still gets the rest of the upstream's answer.
func TestTunnelHalfClose(t *testing.T) {
	c, br := connectThrough(t, 0, func(c net.Conn, br *bufio.Reader) {
		got, _ := io.ReadAll(br)
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, string(got)+"|eof")
	})
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(br); err != nil || string(got) != "ping|eof" {
		t.Fatalf("read %q, %v; want %q then end of file", got, err, "ping|eof")
	}
}

// A tunnel with no traffic for TunnelIdleTimeout closes, even when one side half-closed and
// the other never closes; a busy one stays open.
func TestTunnelIdleTimeout(t *testing.T) {
	// The upstream echoes until the client's half-close, then holds the conn open until the
	// test ends: only the proxy's idle timeout can end the client's read. The timeout is 1 s
	// and the traffic spans 1.5 s with 50 ms pauses, so a busy machine would have to stall
	// the test for a whole second to make the busy tunnel look idle.
	const idle = time.Second
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	c, br := connectThrough(t, idle, func(c net.Conn, br *bufio.Reader) {
		io.Copy(c, br) // echo until the client's half-close,
		<-hold         // then never close
	})
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a failure guard
	start := time.Now()
	for i := 0; time.Since(start) < idle+idle/2; i++ { // longer than the idle timeout
		io.WriteString(c, "ping")
		got := make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
			t.Fatalf("busy tunnel, message %d after %v: %q, %v", i, time.Since(start), got, err)
		}
		time.Sleep(50 * time.Millisecond) // a pause between messages, well below the timeout
	}
	c.(*net.TCPConn).CloseWrite()
	// The upstream holds its side open and the deadline is a minute away: the end of file can
	// only come from the proxy closing the idle tunnel.
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("waiting for the idle close: %v", err)
	}
}
