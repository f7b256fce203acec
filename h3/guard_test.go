package h3

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/message"
)

// delayRelay forwards UDP datagrams between one client and a server. Server datagrams are
// held for hold/2, so the client sends everything of its first moments in 0-RTT packets.
// Client datagrams that start with an Initial packet are forwarded at once until the server
// has answered, and datagrams that start with a 0-RTT packet always are; every other client
// datagram (the one carrying the client's Finished among them) is held for hold. So the server
// processes 0-RTT requests while its handshake is provably incomplete.
type delayRelay struct {
	pc     net.PacketConn
	server net.Addr
	hold   time.Duration

	mu       sync.Mutex
	client   net.Addr
	answered bool
}

func newDelayRelay(t *testing.T, server string, hold time.Duration) *delayRelay {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	r := &delayRelay{pc: pc, server: sa, hold: hold}
	t.Cleanup(func() { pc.Close() })
	go r.run()
	return r
}

func (r *delayRelay) addr() string { return r.pc.LocalAddr().String() }

func (r *delayRelay) run() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		p := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		if from.String() == r.server.String() {
			r.answered = true
			to := r.client
			r.mu.Unlock()
			if to != nil {
				time.AfterFunc(r.hold/2, func() { r.pc.WriteTo(p, to) })
			}
			continue
		}
		r.client = from
		answered := r.answered
		r.mu.Unlock()
		long := p[0]&0x80 != 0
		typ := (p[0] & 0x30) >> 4 // QUIC v1: 0 Initial, 1 0-RTT, 2 Handshake
		if long && (typ == 1 || typ == 0 && !answered) {
			r.pc.WriteTo(p, r.server)
			continue
		}
		time.AfterFunc(r.hold, func() { r.pc.WriteTo(p, r.server) })
	}
}

// notifyingSessionCache signals each session ticket the client stores.
type notifyingSessionCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *notifyingSessionCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// TestZeroRTT resumes a session with 0-RTT: a GET sent in early data reaches the handler
// marked "Early-Data: 1", a POST sent in early data is answered 425 without reaching it.
func TestZeroRTT(t *testing.T) {
	var mu sync.Mutex
	var posts int
	_, addr := startServer(t, func(ex message.ServerExchange) {
		if ex.Request().Method == "POST" {
			mu.Lock()
			posts++
			mu.Unlock()
		}
		echo(ex)
	}, func(s *Server) { s.Allow0RTT = true })
	_, pool := testCertificate(t)
	tickets := &notifyingSessionCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 1)}
	tlsConf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{http3.NextProtoH3},
		ClientSessionCache: tickets}
	ctx := ctxTimeout(t, 10*time.Second)

	// First connection: full handshake, gets a session ticket that allows early data.
	tr := &http3.Transport{}
	qc, err := quic.DialAddrEarly(ctx, addr, tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cc := tr.NewClientConn(qc)
	req, _ := http.NewRequest("GET", "https://"+addr+"/warm", nil)
	res, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.Header.Get("X-Early-Data") != "" {
		t.Fatalf("full handshake request marked as early data")
	}
	select { // wait for the session ticket to arrive (the event, not a span of time)
	case <-tickets.put:
	case <-ctx.Done():
		t.Fatal("no session ticket arrived")
	}
	qc.CloseWithError(0, "")

	// Second connection through a relay that holds the client's handshake completion back.
	relay := newDelayRelay(t, addr, 400*time.Millisecond)
	qc, err = quic.DialAddrEarly(ctx, relay.addr(), tlsConf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	cc = tr.NewClientConn(qc)

	// A POST on a raw request stream goes out in 0-RTT (RoundTrip would wait for the
	// handshake), then a GET that quic-go's client sends in 0-RTT on purpose.
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	post, _ := http.NewRequest("POST", "https://"+addr+"/order", nil)
	post.ContentLength = 3
	if err := str.SendRequestHeader(post); err != nil {
		t.Fatal(err)
	}
	str.Write([]byte("buy"))
	str.Close()

	req, _ = http.NewRequest(http3.MethodGet0RTT, "https://"+addr+"/early", nil)
	res, err = cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if !qc.ConnectionState().Used0RTT {
		t.Fatal("the resumed connection did not use 0-RTT")
	}
	if got := res.Header.Get("X-Early-Data"); got != "1" || res.StatusCode != 200 {
		t.Errorf("GET in 0-RTT: got %d with Early-Data %q, want 200 with 1", res.StatusCode, got)
	}

	res, err = str.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusTooEarly {
		t.Errorf("POST in 0-RTT: got %d %q, want 425", res.StatusCode, body)
	}

	// After the handshake the same POST is served.
	<-qc.HandshakeComplete()
	time.Sleep(350 * time.Millisecond) // the relay delivers the client's Finished
	post, _ = http.NewRequest("POST", "https://"+addr+"/order", strings.NewReader("buy"))
	res, err = cc.RoundTrip(post)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Early-Data") != "" {
		t.Errorf("POST after the handshake: got %d Early-Data %q, want 200 and none",
			res.StatusCode, res.Header.Get("X-Early-Data"))
	}
	mu.Lock()
	defer mu.Unlock()
	if posts != 1 {
		t.Errorf("handler saw %d POSTs, want 1 (the one after the handshake)", posts)
	}
}

// blackhole is a PacketConn that sends but never receives, so a client handshake over it
// stays in flight on the server until the server gives up.
type blackhole struct{ net.PacketConn }

func (b blackhole) ReadFrom(p []byte) (int, net.Addr, error) {
	buf := make([]byte, len(p))
	for {
		if _, _, err := b.PacketConn.ReadFrom(buf); err != nil {
			return 0, nil, err
		}
	}
}

func TestHandshakeCap(t *testing.T) {
	var mu sync.Mutex
	results := map[string]int{}
	s, addr := startServer(t, echo, func(s *Server) {
		s.MaxHandshakes = 1
		s.RetryThreshold = 100 // no Retry: the stuck client would never see it
		s.HandshakeTimeout = 2 * time.Second
		s.HandshakeHook = func(r string) {
			mu.Lock()
			results[r]++
			mu.Unlock()
		}
	})
	_, pool := testCertificate(t)
	raw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stuck := &quic.Transport{Conn: blackhole{raw}}
	t.Cleanup(func() { stuck.Close(); raw.Close() })
	ua, _ := net.ResolveUDPAddr("udp", addr)
	go stuck.Dial(ctxTimeout(t, 3*time.Second), ua,
		&tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}}, &quic.Config{})
	deadline := time.Now().Add(2 * time.Second)
	for s.HandshakesInFlight() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.HandshakesInFlight(); got != 1 {
		t.Fatalf("handshakes in flight: got %d, want 1", got)
	}
	c, _ := newClient(t)
	c.Timeout = 2 * time.Second
	if res, err := c.Get("https://" + addr + "/"); err == nil {
		res.Body.Close()
		t.Fatal("a second handshake over the cap of 1 succeeded, want it refused")
	}
	mu.Lock()
	refused := results["refused"]
	mu.Unlock()
	if refused == 0 {
		t.Errorf("handshake results %v: want a refused one", results)
	}
}

// TestRetryUnderLoad forces address validation (threshold 0 handshakes in flight) and checks
// connections still work: the client answers the Retry and the handshake completes.
func TestRetryUnderLoad(t *testing.T) {
	var mu sync.Mutex
	results := map[string]int{}
	_, addr := startServer(t, echo, func(s *Server) {
		s.RetryThreshold = -1
		s.HandshakeHook = func(r string) { mu.Lock(); results[r]++; mu.Unlock() }
	})
	c, _ := newClient(t)
	res, err := c.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("got %d, want 200", res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if results["ok"] != 1 {
		t.Errorf("handshake results %v, want one ok", results)
	}
	sock := &Socket{}
	st := &serverState{retryAt: 3}
	sock.cur.Store(st)
	st.handshakes.Store(2)
	if sock.verifySourceAddress(nil) {
		t.Error("Retry demanded below the threshold")
	}
	st.handshakes.Store(3)
	if !sock.verifySourceAddress(nil) {
		t.Error("Retry not demanded at the threshold")
	}
}

// TestShutdownDrains starts a slow request, shuts the server down and checks the request
// completes while new connections are no longer accepted.
func TestShutdownDrains(t *testing.T) {
	started := make(chan struct{})
	s, addr := startServer(t, func(ex message.ServerExchange) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		respond(ex, 200, nil, []byte("done"))
	}, nil)
	c, _ := newClient(t)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := c.Get("https://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- result{string(b), err}
	}()
	<-started
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctxTimeout(t, 5*time.Second)) }()
	r := <-got
	if r.err != nil || r.body != "done" {
		t.Fatalf("request in flight during shutdown: got %q, %v; want done", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c2, _ := newClient(t)
	c2.Timeout = time.Second
	if res, err := c2.Get("https://" + addr + "/"); err == nil {
		res.Body.Close()
		t.Fatal("a new connection was served after Shutdown")
	}
}
