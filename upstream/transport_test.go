package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

func TestReuseSequential(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String()}
	const n = 1000
	for i := range n {
		resp, err := tr.RoundTrip(context.Background(), p, get("/"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); got != "hello" {
			t.Fatalf("request %d: body %q, want hello", i, got)
		}
	}
	if got := o.accepted(); got > 2 {
		t.Errorf("origin accepted %d connections for %d sequential requests, want at most 2", got, n)
	}
	s := tr.Stats()
	if s.Requests != n {
		t.Errorf("Stats.Requests = %d, want %d", s.Requests, n)
	}
	if s.ReusedRequests < n-2 || s.ReuseRatio() < 0.99 {
		t.Errorf("Stats.ReusedRequests = %d (ratio %.3f), want >= %d", s.ReusedRequests, s.ReuseRatio(), n-2)
	}
	if s.Dials != uint64(o.accepted()) {
		t.Errorf("Stats.Dials = %d, origin accepted %d", s.Dials, o.accepted())
	}
	if s.IdleConns != 1 || s.ActiveConns != 0 || s.OpenConns != 1 {
		t.Errorf("gauges idle=%d active=%d open=%d, want 1 0 1", s.IdleConns, s.ActiveConns, s.OpenConns)
	}
}

func TestHostOverrideAndScheme(t *testing.T) {
	var host string
	o := newOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host = r.Host }), nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Host: "api.internal"}
	req := get("/")
	req.Scheme = "https"
	resp, err := tr.RoundTrip(context.Background(), p, req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if host != "api.internal" || req.Authority != "api.internal" {
		t.Errorf("origin saw Host %q (req.Authority %q), want api.internal", host, req.Authority)
	}
	if req.Scheme != "http" {
		t.Errorf("req.Scheme = %q, want http (the peer's)", req.Scheme)
	}
}

func TestIdleCapPerPeer(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, &Transport{MaxIdlePerPeer: 2})
	p := &Peer{Address: o.Listener.Addr().String()}
	var resps []*message.Response
	for range 5 {
		resp, err := tr.RoundTrip(context.Background(), p, get("/"))
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp) // body unread: the conn stays busy
	}
	if s := tr.Stats(); s.ActiveConns != 5 || o.accepted() != 5 {
		t.Fatalf("active=%d accepted=%d, want 5 and 5", s.ActiveConns, o.accepted())
	}
	for _, r := range resps {
		readAll(t, r)
	}
	s := tr.Stats()
	if s.IdleConns != 2 || s.Evicted != 3 || s.OpenConns != 2 {
		t.Errorf("idle=%d evicted=%d open=%d, want 2 3 2", s.IdleConns, s.Evicted, s.OpenConns)
	}
}

func TestIdleCapTotal(t *testing.T) {
	o1 := newOrigin(t, nil, nil, false)
	o2 := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, &Transport{MaxIdleTotal: 3})
	var resps []*message.Response
	for _, o := range []*origin{o1, o2} {
		p := &Peer{Address: o.Listener.Addr().String()}
		for range 3 {
			resp, err := tr.RoundTrip(context.Background(), p, get("/"))
			if err != nil {
				t.Fatal(err)
			}
			resps = append(resps, resp)
		}
	}
	for _, r := range resps {
		readAll(t, r)
	}
	if s := tr.Stats(); s.IdleConns != 3 || s.Evicted != 3 || s.Keys != 2 {
		t.Errorf("idle=%d evicted=%d keys=%d, want 3 3 2", s.IdleConns, s.Evicted, s.Keys)
	}
}

func TestIdleExpiry(t *testing.T) {
	var mu sync.Mutex
	closed := 0
	o := newOrigin(t, nil, nil, false, func(s *httptest.Server) {
		s.Config.ConnState = func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		}
	})
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Timeouts: Timeouts{Idle: 40 * time.Millisecond}}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if s := tr.Stats(); s.IdleConns != 1 {
		t.Fatalf("idle=%d after one request, want 1", s.IdleConns)
	}
	deadline := time.Now().Add(20 * time.Second) // a failure guard for a busy machine
	for tr.Stats().Expired == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := tr.Stats()
	if s.Expired != 1 || s.IdleConns != 0 || s.OpenConns != 0 {
		t.Fatalf("expired=%d idle=%d open=%d, want 1 0 0", s.Expired, s.IdleConns, s.OpenConns)
	}
	for {
		mu.Lock()
		c := closed
		mu.Unlock()
		if c == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("origin saw %d closed conns, want 1", c)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err = tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if got := o.accepted(); got != 2 {
		t.Errorf("accepted %d, want 2 (a new conn after expiry)", got)
	}
}

func TestExpiredOnCheckout(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Timeouts: Timeouts{Idle: time.Hour}}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	// Age the idle conn past its timeout without waiting for the reaper.
	b := tr.pool.bucketFor(p, ptr(tr.cfg.resolve(&p.Timeouts)))
	b.mu.Lock()
	b.idle[0].idleAt = time.Now().Add(-2 * time.Hour)
	b.mu.Unlock()
	resp, err = tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if s := tr.Stats(); s.Expired != 1 || s.Dials != 2 || s.ReusedRequests != 0 {
		t.Errorf("expired=%d dials=%d reused=%d, want 1 2 0", s.Expired, s.Dials, s.ReusedRequests)
	}
}

func ptr[T any](v T) *T { return &v }

func TestOriginClosedIdleConn(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	// The dialer hands the transport the *net.TCPConn itself (so that its liveness check
	// applies) and keeps it, for the test to see the origin's FIN arrive.
	var d net.Dialer
	var dialedMu sync.Mutex
	var dialed []net.Conn
	tr := newTestTransport(t, &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			dialedMu.Lock()
			dialed = append(dialed, c)
			dialedMu.Unlock()
		}
		return c, err
	}})
	p := &Peer{Address: o.Listener.Addr().String()}
	for range 2 {
		resp, err := tr.RoundTrip(context.Background(), p, get("/"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	o.ln.closeAccepted()
	// Wait for the FIN to reach the pooled conn (the only one dialed so far): the checkout's
	// liveness check then must find the conn closed. The conn holds nothing else to read, so
	// this read ends with the end of file, which later reads see again.
	dialedMu.Lock()
	pooled := dialed[0]
	dialedMu.Unlock()
	pooled.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard, not a wait
	if n, err := pooled.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("pooled conn after the origin closed it: %d bytes, %v; want end of file", n, err)
	}
	pooled.SetReadDeadline(time.Time{})
	// A request with a body cannot be retried once sent, so the pooled conn is probed first.
	post := get("/")
	post.Method, post.Body, post.ContentLength = "POST", strings.NewReader("payload"), 7
	resp, err := tr.RoundTrip(context.Background(), p, post)
	if err != nil {
		t.Fatalf("request after the origin closed the idle conn: %v", err)
	}
	readAll(t, resp)
	if s := tr.Stats(); s.StaleClosed != 1 || s.Retries != 0 || s.Dials != 2 {
		t.Errorf("stale=%d retries=%d dials=%d, want 1 0 2", s.StaleClosed, s.Retries, s.Dials)
	}
}

// A bodiless GET skips the probe: a stale conn fails fast and the transport retries it.
func TestOriginClosedIdleConnGETRetried(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	dialed := &recordingDialer{}
	tr := newTestTransport(t, &Transport{DialContext: dialed.dial})
	p := &Peer{Address: o.Listener.Addr().String()}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	o.ln.closeAccepted()
	dialed.waitFIN(t, 0)
	resp, err = tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatalf("GET after the origin closed the idle conn: %v", err)
	}
	readAll(t, resp)
	if s := tr.Stats(); s.StaleClosed != 0 || s.Retries != 1 || s.Dials != 2 {
		t.Errorf("stale=%d retries=%d dials=%d, want 0 1 2", s.StaleClosed, s.Retries, s.Dials)
	}
}

// recordingDialer dials TCP and keeps every conn it made, for a test to wait on the origin's
// FIN instead of sleeping.
type recordingDialer struct {
	d     net.Dialer
	mu    sync.Mutex
	conns []net.Conn
}

func (r *recordingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := r.d.DialContext(ctx, network, addr)
	if err == nil {
		r.mu.Lock()
		r.conns = append(r.conns, c)
		r.mu.Unlock()
	}
	return c, err
}

// waitFIN blocks until the i-th dialed conn reads the end of file the origin's close sends.
// The pooled conn holds nothing else to read, so the read consumes nothing the transport
// needs, and later reads see the end of file again.
func (r *recordingDialer) waitFIN(t *testing.T, i int) {
	t.Helper()
	r.mu.Lock()
	if i >= len(r.conns) {
		r.mu.Unlock()
		t.Fatalf("conn %d was never dialed (%d dialed)", i, len(r.conns))
	}
	c := r.conns[i]
	r.mu.Unlock()
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard, not a wait
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("conn %d after the origin closed it: %d bytes, %v; want end of file", i, n, err)
	}
	c.SetReadDeadline(time.Time{})
}

// opaqueConn hides the TCP conn so the liveness check cannot apply.
type opaqueConn struct{ net.Conn }

func TestOriginClosedIdleConnRetry(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	dialed := &recordingDialer{}
	tr := newTestTransport(t, &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialed.dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return opaqueConn{c}, nil
	}})
	p := &Peer{Address: o.Listener.Addr().String()}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	o.ln.closeAccepted()
	dialed.waitFIN(t, 0)
	resp, err = tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatalf("GET after the origin closed the idle conn: %v", err)
	}
	readAll(t, resp)
	if s := tr.Stats(); s.Retries != 1 || s.Dials != 2 {
		t.Errorf("retries=%d dials=%d, want 1 2", s.Retries, s.Dials)
	}

	// A POST with a body is not retried: the error says Retry and Reused for the engine.
	o.ln.closeAccepted()
	dialed.waitFIN(t, 1) // the conn the retry dialed, now pooled
	req := get("/")
	req.Method = "POST"
	req.Body = strings.NewReader("x")
	req.ContentLength = 1
	_, err = tr.RoundTrip(context.Background(), p, req)
	var fe *fault.Error
	if !errors.As(err, &fe) || !fe.Reused || fe.Source != fault.Upstream {
		t.Fatalf("POST on a dead reused conn: err %v, want an upstream *fault.Error with Reused", err)
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := newTestTransport(t, nil)
	_, err = tr.RoundTrip(context.Background(), &Peer{Address: addr}, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.ConnectRefused || !fe.Retry || fe.Source != fault.Upstream {
		t.Fatalf("err = %v, want upstream connect refused with Retry", err)
	}
	if fe.StatusCode() != 502 {
		t.Errorf("status %d, want 502", fe.StatusCode())
	}
	if s := tr.Stats(); s.DialErrors != 1 || s.OpenConns != 0 {
		t.Errorf("dial errors=%d open=%d, want 1 0", s.DialErrors, s.OpenConns)
	}
}

func TestConnectTimeoutDial(t *testing.T) {
	// A dial hook that never completes, like a blackholed SYN.
	tr := newTestTransport(t, &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}})
	p := &Peer{Address: "127.0.0.1:9", Timeouts: Timeouts{Connect: 30 * time.Millisecond}}
	start := time.Now()
	_, err := tr.RoundTrip(context.Background(), p, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.ConnectTimeout || !fe.Retry {
		t.Fatalf("err = %v, want connect timeout with Retry", err)
	}
	// The hook returns only when the dial's context ends, and the error kind says which limit
	// ended it; the bound is a generous guard, not a measurement.
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("took %v, want about the 30ms connect timeout", el)
	}
}

func TestConnectTimeoutTLSHandshake(t *testing.T) {
	// A loopback listener that accepts and never answers: the TLS handshake hangs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	tr := newTestTransport(t, nil)
	p := &Peer{Address: ln.Addr().String(), TLS: &TLSOptions{RootCAs: getCA(t).pool},
		Timeouts: Timeouts{Connect: 50 * time.Millisecond}}
	_, err = tr.RoundTrip(context.Background(), p, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.ConnectTimeout || !fe.Retry {
		t.Fatalf("err = %v, want connect timeout with Retry", err)
	}
}

func TestCanceledWhileDialing(t *testing.T) {
	tr := newTestTransport(t, &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	_, err := tr.RoundTrip(ctx, &Peer{Address: "127.0.0.1:9"}, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Canceled || fe.Retry {
		t.Fatalf("err = %v, want canceled without Retry", err)
	}
}

func TestMaxConnsPerPeer(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, &Transport{MaxConnsPerPeer: 1, MaxConnWait: 2 * time.Second})
	p := &Peer{Address: o.Listener.Addr().String()}
	first, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(context.Background(), p, get("/"))
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("second request finished (%v) while the only conn was busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	readAll(t, first)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := o.accepted(); got != 1 {
		t.Errorf("accepted %d conns, want 1", got)
	}

	// A bounded wait that expires.
	tr2 := newTestTransport(t, &Transport{MaxConnsPerPeer: 1, MaxConnWait: 30 * time.Millisecond})
	held, err := tr2.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer readAll(t, held)
	_, err = tr2.RoundTrip(context.Background(), p, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.ConnectTimeout || !fe.Retry {
		t.Fatalf("err = %v, want connect timeout after the wait", err)
	}
}

func TestTotalTimeout(t *testing.T) {
	o := newOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "12345")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}), nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Timeouts: Timeouts{Total: 100 * time.Millisecond}}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.TotalTimeout {
		t.Fatalf("body read err = %v, want total timeout", err)
	}
	// The error kind proves the total timeout ended the read (the origin would finish the body
	// after 2 s); the bound is a generous guard, not a measurement.
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("body read took %v, want about 100ms", el)
	}
	if s := tr.Stats(); s.OpenConns != 0 {
		t.Errorf("open=%d after a total timeout, want 0", s.OpenConns)
	}
}

func TestUpgradeDetaches(t *testing.T) {
	o := newOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
			return
		}
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(c, strings.ToUpper(line))
	}), nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String()}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp) // one pooled conn
	req := get("/ws")
	req.Header.Add("Connection", "Upgrade")
	req.Header.Add("Upgrade", "echo")
	resp, err = tr.RoundTrip(context.Background(), p, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 {
		t.Fatalf("status %d, want 101", resp.Status)
	}
	if s := tr.Stats(); s.OpenConns != 0 || s.IdleConns != 0 || s.ActiveConns != 0 {
		t.Errorf("after 101: open=%d idle=%d active=%d, want 0 0 0 (detached)", s.OpenConns, s.IdleConns, s.ActiveConns)
	}
	rw := resp.Body.(io.ReadWriter)
	io.WriteString(rw, "ping\n")
	line, err := bufio.NewReader(rw).ReadString('\n')
	if err != nil || line != "PING\n" {
		t.Fatalf("upgraded stream echoed %q, %v; want PING", line, err)
	}
	resp.Body.Close()
	resp, err = tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if got := o.accepted(); got != 2 {
		t.Errorf("accepted %d, want 2 (the upgraded conn never returns to the pool)", got)
	}
}

func TestCloseTransport(t *testing.T) {
	o := newOrigin(t, nil, nil, false)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String()}
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	tr.Close()
	if s := tr.Stats(); s.OpenConns != 0 || s.IdleConns != 0 {
		t.Errorf("after Close: open=%d idle=%d, want 0 0", s.OpenConns, s.IdleConns)
	}
	_, err = tr.RoundTrip(context.Background(), p, get("/"))
	if !errors.Is(err, ErrClosed) {
		t.Errorf("RoundTrip after Close: %v, want ErrClosed", err)
	}
}

// A tunnel (101, or 2xx to CONNECT) keeps being a stream that writes and half-closes when a
// total timeout wraps it.
func TestTunnelStreamWithTotalTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				first, _ := br.ReadString('\n')
				for {
					if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
						break
					}
				}
				if strings.HasPrefix(first, "CONNECT ") {
					io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
				} else {
					io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				}
				got, _ := io.ReadAll(br) // until the half-close
				io.WriteString(c, string(got)+"|eof")
			}()
		}
	}()
	tr := newTestTransport(t, &Transport{Timeouts: Timeouts{Total: 5 * time.Second}})
	p := &Peer{Address: ln.Addr().String()}
	for _, method := range []string{"CONNECT", "GET"} {
		req := &message.Request{Method: method, Target: "origin.test:443", Proto: message.HTTP11, Authority: "origin.test:443"}
		if method == "GET" {
			req.Target = "/ws"
			req.Header.Add("Upgrade", "echo")
		}
		resp, err := tr.RoundTrip(context.Background(), p, req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		rw, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			t.Fatalf("%s: status %d, body %T is not a stream", method, resp.Status, resp.Body)
		}
		cw, ok := rw.(interface{ CloseWrite() error })
		if !ok {
			t.Fatalf("%s: stream %T cannot half-close", method, rw)
		}
		io.WriteString(rw, "ping")
		if err := cw.CloseWrite(); err != nil {
			t.Fatalf("%s: CloseWrite: %v", method, err)
		}
		if got, err := io.ReadAll(rw); err != nil || string(got) != "ping|eof" {
			t.Fatalf("%s: read %q, %v; want %q", method, got, err, "ping|eof")
		}
		rw.Close()
	}
}

// A connection whose HTTP/2 client could not be started carried nothing of the request: the
// failure is Unprocessed, so the engine may retry it elsewhere whatever the method.
func TestH2StartFailureUnprocessed(t *testing.T) {
	codecs := nullCodecs
	codecs.http2 = func(net.Conn, *codecOptions) (muxCodec, error) { return nil, io.ErrClosedPipe }
	tr := &Transport{codecs: &codecs}
	t.Cleanup(func() { tr.Close() })
	p := &Peer{Address: silentOrigin(t), Protocol: HTTP2}
	req := get("/")
	req.Method = "POST"
	_, err := tr.RoundTrip(context.Background(), p, req)
	var fe *fault.Error
	if !errors.As(err, &fe) || !fe.Retry || !fe.Unprocessed {
		t.Fatalf("got %#v, want a retryable, unprocessed *fault.Error", err)
	}
}
