package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
	"github.com/verge-edge/verge/server"
	"github.com/verge-edge/verge/upstream"
)

// staticPhases proxies everything to one peer.
type staticPhases struct {
	proxy.Base[struct{}]
	peer *upstream.Peer
}

func (p staticPhases) UpstreamPeer(*proxy.Session, *struct{}) (*upstream.Peer, error) {
	return p.peer, nil
}

// verge is a running proxy for a test.
type verge struct {
	addr      string
	transport *upstream.Transport
	srv       *server.Server
}

// startVerge starts Verge on a loopback port in front of peer; tlsCfg selects TLS downstream.
func startVerge(t testing.TB, peer *upstream.Peer, tlsCfg *tls.Config) *verge {
	t.Helper()
	tr := &upstream.Transport{}
	p := &proxy.Proxy[struct{}]{Phases: staticPhases{peer: peer}, Transport: tr}
	srv := &server.Server{Handler: p, TLSConfig: tlsCfg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		tr.Close()
	})
	return &verge{addr: ln.Addr().String(), transport: tr, srv: srv}
}

// peerFor returns a plain HTTP/1.1 peer for an httptest server.
func peerFor(ts *httptest.Server) *upstream.Peer {
	return &upstream.Peer{Address: ts.Listener.Addr().String()}
}

// tlsPair returns a server TLS config with httptest's certificate and a pool that trusts it.
func tlsPair(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	cert := ts.TLS.Certificates[0]
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	ts.Close()
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pool
}

var _ message.ServerExchange = nil
