package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

func roundTripOK(t *testing.T, tr *Transport, p *Peer) *message.Response {
	t.Helper()
	resp, err := tr.RoundTrip(context.Background(), p, get("/"))
	if err != nil {
		t.Fatalf("peer %+v: %v", p.TLS, err)
	}
	readAll(t, resp)
	return resp
}

func TestTLSVerify(t *testing.T) {
	o := newOrigin(t, nil, &tls.Config{}, false)
	tr := newTestTransport(t, nil)
	addr := o.Listener.Addr().String()

	roundTripOK(t, tr, &Peer{Address: addr, TLS: &TLSOptions{RootCAs: getCA(t).pool, ServerName: "origin.test"}})

	// Without the CA the system roots do not know the origin: a retryable handshake error.
	_, err := tr.RoundTrip(context.Background(), &Peer{Address: addr, TLS: &TLSOptions{ServerName: "origin.test"}}, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.TLSHandshake || !fe.Retry || fe.StatusCode() != 502 {
		t.Fatalf("err = %v, want a retryable TLS handshake error (502)", err)
	}
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Errorf("cause %v, want x509.UnknownAuthorityError", fe.Cause)
	}
	// A name the certificate does not hold fails too.
	_, err = tr.RoundTrip(context.Background(), &Peer{Address: addr, TLS: &TLSOptions{RootCAs: getCA(t).pool, ServerName: "other.test"}}, get("/"))
	if !errors.As(err, &fe) || fe.Kind != fault.TLSHandshake {
		t.Fatalf("wrong name: err = %v, want TLS handshake error", err)
	}
	// InsecureSkipVerify only when asked.
	roundTripOK(t, tr, &Peer{Address: addr, TLS: &TLSOptions{InsecureSkipVerify: true}})
}

func TestTLSSNI(t *testing.T) {
	o := newOrigin(t, nil, &tls.Config{}, false)
	tr := newTestTransport(t, nil)
	_, portNum, _ := net.SplitHostPort(o.Listener.Addr().String())
	pool := getCA(t).pool
	roundTripOK(t, tr, &Peer{Address: "127.0.0.1:" + portNum, TLS: &TLSOptions{RootCAs: pool, ServerName: "origin.test"}})
	roundTripOK(t, tr, &Peer{Address: "localhost:" + portNum, TLS: &TLSOptions{RootCAs: pool}})
	got := o.sniList()
	want := []string{"origin.test", "localhost"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SNI seen by the origin %q, want %q (explicit, then the host of Address)", got, want)
	}
}

func TestTLSClientCert(t *testing.T) {
	c := getCA(t)
	var mu sync.Mutex
	var seen []string
	o := newOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
	}), &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: c.clientPool}, false)
	tr := newTestTransport(t, nil)
	addr := o.Listener.Addr().String()
	roundTripOK(t, tr, &Peer{Address: addr, TLS: &TLSOptions{RootCAs: c.pool, ClientCert: &c.client}})
	if len(seen) != 1 || seen[0] != "origin.test" {
		t.Errorf("origin saw client certs %q, want one (origin.test)", seen)
	}
	// Without a certificate the origin refuses (TLS 1.3 reports it after the handshake).
	_, err := tr.RoundTrip(context.Background(), &Peer{Address: addr, TLS: &TLSOptions{RootCAs: c.pool}}, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Source != fault.Upstream {
		t.Fatalf("no client cert: err = %v, want an upstream error", err)
	}
}

func TestTLSSessionResumption(t *testing.T) {
	var mu sync.Mutex
	var resumed []bool
	o := newOrigin(t, nil, &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
		mu.Lock()
		resumed = append(resumed, cs.DidResume)
		mu.Unlock()
		return nil
	}}, false)
	tr := newTestTransport(t, &Transport{MaxIdlePerPeer: -1}) // every request dials
	p := &Peer{Address: o.Listener.Addr().String(), TLS: &TLSOptions{RootCAs: getCA(t).pool}}
	for range 3 {
		roundTripOK(t, tr, p)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(resumed) != 3 || resumed[0] || !resumed[2] {
		t.Errorf("handshakes resumed %v, want [false ... true]", resumed)
	}
}

func TestStrictPoolKeys(t *testing.T) {
	c := getCA(t)
	o := newOrigin(t, nil, &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: c.clientPool}, false)
	tr := newTestTransport(t, nil)
	addr := o.Listener.Addr().String()
	otherPool := c.pool.Clone() // same CA, distinct pool: a distinct key
	base := TLSOptions{RootCAs: c.pool, ServerName: "origin.test"}
	variants := []struct {
		name string
		opts TLSOptions
	}{
		{"base", base},
		{"sni", TLSOptions{RootCAs: c.pool, ServerName: "localhost"}},
		{"client cert", TLSOptions{RootCAs: c.pool, ServerName: "origin.test", ClientCert: &c.client}},
		{"insecure", TLSOptions{RootCAs: c.pool, ServerName: "origin.test", InsecureSkipVerify: true}},
		{"other CA pool", TLSOptions{RootCAs: otherPool, ServerName: "origin.test"}},
		{"min version", TLSOptions{RootCAs: c.pool, ServerName: "origin.test", MinVersion: tls.VersionTLS13}},
	}
	for i, v := range variants {
		opts := v.opts
		roundTripOK(t, tr, &Peer{Address: addr, TLS: &opts})
		if got := o.accepted(); got != i+1 {
			t.Fatalf("after %q: origin accepted %d conns, want %d (no sharing across keys)", v.name, got, i+1)
		}
	}
	// Plain HTTP to the same address is another key too; identical options share.
	for _, v := range variants {
		opts := v.opts
		roundTripOK(t, tr, &Peer{Address: addr, TLS: &opts})
	}
	if got := o.accepted(); got != len(variants) {
		t.Errorf("repeating each variant: accepted %d, want %d (reuse within a key)", got, len(variants))
	}
	if s := tr.Stats(); s.Keys != len(variants) || len(tr.Pool().KeyStats()) != len(variants) {
		t.Errorf("keys %d, want %d", s.Keys, len(variants))
	}
}

func TestH2OverTLSByALPN(t *testing.T) {
	o := newOrigin(t, slowHandler(20*time.Millisecond), &tls.Config{}, true)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Protocol: HTTP2OrHTTP1,
		TLS: &TLSOptions{RootCAs: getCA(t).pool, ServerName: "origin.test"}}
	concurrent(t, tr, p, 50, message.HTTP2)
	if got := o.accepted(); got != 1 {
		t.Errorf("accepted %d conns for 50 concurrent h2 requests, want 1", got)
	}
	if s := tr.Stats(); s.H2Conns != 1 || s.Requests != 50 || s.ReusedRequests != 49 {
		t.Errorf("h2conns=%d requests=%d reused=%d, want 1 50 49", s.H2Conns, s.Requests, s.ReusedRequests)
	}

	// Offering h2 and http/1.1 to an HTTP/1-only origin uses HTTP/1.1.
	o1 := newOrigin(t, nil, &tls.Config{}, false)
	p1 := &Peer{Address: o1.Listener.Addr().String(), Protocol: HTTP2OrHTTP1,
		TLS: &TLSOptions{RootCAs: getCA(t).pool, ServerName: "origin.test"}}
	if resp := roundTripOK(t, tr, p1); resp.Proto != message.HTTP11 {
		t.Errorf("proto %q, want HTTP/1.1", resp.Proto)
	}
	// Requiring h2 from it fails the handshake.
	_, err := tr.RoundTrip(context.Background(), &Peer{Address: p1.Address, Protocol: HTTP2, TLS: p1.TLS}, get("/"))
	var fe *fault.Error
	if !errors.As(err, &fe) || fe.Kind != fault.TLSHandshake {
		t.Errorf("h2 required from an h1 origin: %v, want TLS handshake error", err)
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	o := newOrigin(t, slowHandler(20*time.Millisecond), nil, true)
	tr := newTestTransport(t, nil)
	p := &Peer{Address: o.Listener.Addr().String(), Protocol: HTTP2}
	concurrent(t, tr, p, 50, message.HTTP2)
	if got := o.accepted(); got != 1 {
		t.Errorf("accepted %d conns for 50 concurrent h2c requests, want 1", got)
	}
	// Sequential requests keep using the same conn.
	for range 10 {
		roundTripOK(t, tr, p)
	}
	if got := o.accepted(); got != 1 {
		t.Errorf("accepted %d conns, want 1", got)
	}
}

func slowHandler(d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
	})
}

// concurrent runs n requests at once and checks each gets "hello" over proto.
func concurrent(t *testing.T, tr *Transport, p *Peer, n int, proto string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.RoundTrip(context.Background(), p, get("/"))
			if err != nil {
				errs <- err
				return
			}
			if resp.Proto != proto {
				errs <- fmt.Errorf("proto %q, want %q", resp.Proto, proto)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(body) != "hello" {
				errs <- fmt.Errorf("body %q, %v", body, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestH2IdleExpiry(t *testing.T) {
	o := newOrigin(t, nil, nil, true)
	tr := newTestTransport(t, nil)
	// The idle timeout also bounds a new conn's setup: the HTTP/2 client's idle timer runs
	// from the conn's start, before the first stream. 40 ms was shorter than a TLS handshake
	// plus the peer's SETTINGS under the race detector on a busy machine, and the conn was
	// closed before its first request ("client conn could not be established").
	p := &Peer{Address: o.Listener.Addr().String(), Protocol: HTTP2, Timeouts: Timeouts{Idle: 500 * time.Millisecond}}
	if resp := roundTripOK(t, tr, p); resp.Proto != message.HTTP2 {
		t.Fatalf("proto %q, want HTTP/2.0", resp.Proto)
	}
	if s := tr.Stats(); s.H2Conns != 1 {
		t.Fatalf("h2 conns %d, want 1", s.H2Conns)
	}
	deadline := time.Now().Add(20 * time.Second) // a failure guard for a busy machine
	for tr.Stats().H2Conns != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := tr.Stats(); s.H2Conns != 0 || s.Expired != 1 || s.OpenConns != 0 {
		t.Fatalf("h2conns=%d expired=%d open=%d, want 0 1 0", s.H2Conns, s.Expired, s.OpenConns)
	}
	roundTripOK(t, tr, p)
	if got := o.accepted(); got != 2 {
		t.Errorf("accepted %d, want 2", got)
	}
}
