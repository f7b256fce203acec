package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/message"
)

// edgeExchange records the response a plainEdge writes.
type edgeExchange struct {
	req    message.Request
	conn   message.ConnInfo
	status int
	loc    string
	body   []byte
}

func (e *edgeExchange) Request() *message.Request    { return &e.req }
func (e *edgeExchange) Context() context.Context     { return context.Background() }
func (e *edgeExchange) Conn() *message.ConnInfo      { return &e.conn }
func (e *edgeExchange) Flush() error                 { return nil }
func (e *edgeExchange) Finish(*message.Header) error { return nil }
func (e *edgeExchange) Abort(error)                  {}
func (e *edgeExchange) Write(p []byte) (int, error) {
	e.body = append(e.body, p...)
	return len(p), nil
}
func (e *edgeExchange) WriteHeader(r *message.Response) error {
	e.status = r.Status
	e.loc = r.Header.Get("Location")
	return nil
}

// redirectConfig is a plain redirect_https listener, a TLS listener on port (ACME for
// acme.example) and routes for example.com and *.wild.example.
func redirectConfig(port string) *config.Config {
	return &config.Config{
		Listeners: []config.Listener{
			{Name: "plain", Address: "127.0.0.1:80", RedirectHTTPS: true},
			{Name: "secure", Address: "127.0.0.1:" + port, TLS: &config.ListenerTLS{ACME: &config.ACME{Domains: []string{"ACME.example."}}}},
		},
		Routes: []config.Route{
			{Match: config.Match{Host: config.StringList{"Example.com", "*.wild.example"}}},
			{Match: config.Match{Host: config.StringList{"::1"}}},
		},
	}
}

func TestPlainEdgeRedirect(t *testing.T) {
	for _, tc := range []struct {
		port, authority, target string
		proto                   string
		status                  int
		loc                     string
	}{
		{"443", "example.com", "/a?b=c", message.HTTP11, 308, "https://example.com/a?b=c"},
		{"443", "example.com:80", "/", message.HTTP11, 308, "https://example.com/"},
		{"443", "EXAMPLE.com.", "/", message.HTTP11, 308, "https://EXAMPLE.com/"},
		{"443", "acme.example", "/", message.HTTP11, 308, "https://acme.example/"},
		{"443", "a.b.wild.example", "/", message.HTTP11, 308, "https://a.b.wild.example/"},
		{"8443", "example.com:8080", "/x", message.HTTP11, 308, "https://example.com:8443/x"},
		{"443", "[::1]:80", "/", message.HTTP11, 308, "https://[::1]/"},
		{"443", "", "/", message.HTTP11, 400, ""},
		{"443", "example.com", "*", message.HTTP11, 400, ""},
		// Names nobody configured: never a redirect elsewhere (open redirect, cache poisoning).
		{"443", "evil.example", "/", message.HTTP11, 421, ""},
		{"443", "evil.example:80", "/", message.HTTP2, 421, ""}, // HTTP/2 :authority
		{"443", "wild.example", "/", message.HTTP11, 421, ""},   // the wildcard's apex
		{"443", "a@evil.example#.wild.example", "/", message.HTTP11, 421, ""},
		{"443", "evil.example/.wild.example", "/", message.HTTP2, 421, ""},
		{"443", "example.com.evil.example", "/", message.HTTP11, 421, ""},
	} {
		cfg := redirectConfig(tc.port)
		e := newPlainEdge(cfg, &cfg.Listeners[0], nil)
		ex := &edgeExchange{req: message.Request{Method: "GET", Authority: tc.authority, Target: tc.target, Proto: tc.proto}}
		if !e.serve(ex) || ex.status != tc.status || ex.loc != tc.loc {
			t.Errorf("%s %s (https port %s): %d %q, want %d %q", tc.authority, tc.target, tc.port, ex.status, ex.loc, tc.status, tc.loc)
		}
	}
}

// TestPlainEdgeChallengePath: without redirect_https, a challenge path with no pending
// challenge goes on to the routes; with it, it is answered 404 (never redirected, never a
// key authorization made up from the token).
func TestPlainEdgeChallengePath(t *testing.T) {
	m := acme.New(acme.Options{Dir: t.TempDir()})
	defer m.Close()
	ex := &edgeExchange{req: message.Request{Method: "GET", Authority: "a.example", Target: "/.well-known/acme-challenge/tok", Proto: message.HTTP11}}
	if (&plainEdge{acme: m}).serve(ex) {
		t.Errorf("unknown token answered %d without redirect_https", ex.status)
	}
	ex = &edgeExchange{req: ex.req}
	if !(&plainEdge{acme: m, redirectHTTPS: true}).serve(ex) || ex.status != 404 || len(ex.body) == 0 {
		t.Errorf("unknown token with redirect_https: %d %q, want 404", ex.status, ex.body)
	}
}

// TestACMEGetCertificatePrefersConfigured: a configured certificate naming the server name
// wins over ACME; a name nothing covers falls back to the first configured certificate.
func TestACMEGetCertificatePrefersConfigured(t *testing.T) {
	m := acme.New(acme.Options{Dir: t.TempDir()})
	defer m.Close()
	site, err := m.Prepare(acme.SiteConfig{Listener: "l", ACME: config.ACME{CA: "https://127.0.0.1:1/dir"}, Domains: []string{"managed.example"}})
	if err != nil {
		t.Fatal(err)
	}
	static := selfSigned(t, "static.example")
	c1, c2 := net.Pipe() // certmagic logs the peer's address
	defer c1.Close()
	defer c2.Close()
	get := acmeGetCertificate(site, newCertSet([]*tls.Certificate{static}))
	for _, name := range []string{"static.example", "unknown.example"} {
		if c, err := get(&tls.ClientHelloInfo{ServerName: name, Conn: c1}); err != nil || c != static {
			t.Errorf("%s: got %v, %v; want the configured certificate", name, c, err)
		}
	}
	// Without configured certificates an unknown name fails the handshake.
	get = acmeGetCertificate(site, newCertSet(nil))
	if c, err := get(&tls.ClientHelloInfo{ServerName: "unknown.example", Conn: c1}); err == nil {
		t.Errorf("unknown name got %v", c.Leaf)
	}
}

func selfSigned(t testing.TB, name string) *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// BenchmarkPlainEdgePassThrough is the cost redirect-less ACME adds to every request of a
// plain listener: the path check.
func BenchmarkPlainEdgePassThrough(b *testing.B) {
	m := acme.New(acme.Options{Dir: b.TempDir()})
	defer m.Close()
	e := &plainEdge{acme: m}
	ex := &edgeExchange{req: message.Request{Method: "GET", Authority: "a.example", Target: "/index.html?x=1", Proto: message.HTTP11}}
	b.ReportAllocs()
	for b.Loop() {
		if e.serve(ex) {
			b.Fatal("served")
		}
	}
}

// BenchmarkPlainEdgeRedirect is one redirect_https answer.
func BenchmarkPlainEdgeRedirect(b *testing.B) {
	cfg := redirectConfig("443")
	e := newPlainEdge(cfg, &cfg.Listeners[0], nil)
	ex := &edgeExchange{req: message.Request{Method: "GET", Authority: "example.com:80", Target: "/index.html?x=1", Proto: message.HTTP11}}
	b.ReportAllocs()
	for b.Loop() {
		e.serve(ex)
	}
}

// BenchmarkACMEGetCertificate is the certificate choice of one handshake on an ACME
// listener with a configured certificate for the name.
func BenchmarkACMEGetCertificate(b *testing.B) {
	m := acme.New(acme.Options{Dir: b.TempDir()})
	defer m.Close()
	site, err := m.Prepare(acme.SiteConfig{Listener: "l", ACME: config.ACME{CA: "https://127.0.0.1:1/dir"}, Domains: []string{"managed.example"}})
	if err != nil {
		b.Fatal(err)
	}
	get := acmeGetCertificate(site, newCertSet([]*tls.Certificate{selfSigned(b, "static.example")}))
	hello := &tls.ClientHelloInfo{ServerName: "static.example"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := get(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// TestACMETLSALPNOnlyAlone: only a hello offering acme-tls/1 alone is a TLS-ALPN-01
// validation. A client offering it among others gets the normal certificate choice (a name
// covered by a configured certificate succeeds) and never negotiates acme-tls/1.
func TestACMETLSALPNOnlyAlone(t *testing.T) {
	m := acme.New(acme.Options{Dir: t.TempDir()})
	defer m.Close()
	site, err := m.Prepare(acme.SiteConfig{Listener: "l", ACME: config.ACME{CA: "https://127.0.0.1:1/dir"}, Domains: []string{"managed.example"}})
	if err != nil {
		t.Fatal(err)
	}
	static := selfSigned(t, "static.example")
	cfg := &tls.Config{
		GetCertificate:     acmeGetCertificate(site, newCertSet([]*tls.Certificate{static})),
		NextProtos:         []string{"h2", "http/1.1"},
		ClientAuth:         tls.VerifyClientCertIfGiven,
		GetConfigForClient: acmeChallengeConfig(site, tls.VersionTLS12),
	}
	roots := x509.NewCertPool()
	roots.AddCert(static.Leaf)
	handshake := func(name string, protos []string) (tls.ConnectionState, error) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		srv := tls.Server(c1, cfg)
		done := make(chan error, 1)
		go func() { done <- srv.Handshake(); c1.Close() }()
		cl := tls.Client(c2, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: protos})
		err := cl.Handshake()
		<-done
		return cl.ConnectionState(), err
	}
	st, err := handshake("static.example", []string{acmeALPN, "http/1.1"})
	if err != nil || st.NegotiatedProtocol != "http/1.1" || !st.PeerCertificates[0].Equal(static.Leaf) {
		t.Errorf("acme-tls/1 among others for a configured name: %q, %v; want http/1.1 and the configured certificate", st.NegotiatedProtocol, err)
	}
	if st, err := handshake("static.example", []string{acmeALPN, "foo"}); st.NegotiatedProtocol == acmeALPN {
		t.Errorf("acme-tls/1 negotiated on a normal connection (%v)", err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "managed.example", SupportedProtos: []string{acmeALPN}}
	c, err := cfg.GetConfigForClient(hello)
	if err != nil || c == nil || len(c.NextProtos) != 1 || c.NextProtos[0] != acmeALPN || c.ClientAuth != tls.NoClientCert {
		t.Errorf("acme-tls/1 alone: config %+v, %v; want the challenge config", c, err)
	}
	hello.SupportedProtos = []string{"http/1.1", acmeALPN}
	if c, err := cfg.GetConfigForClient(hello); c != nil || err != nil {
		t.Errorf("acme-tls/1 among others got the challenge config")
	}
}
