package h3

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/message"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// testCertificate returns a self-signed certificate for 127.0.0.1 and localhost and a pool
// that trusts it.
func testCertificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "verge h3 test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		testPool = x509.NewCertPool()
		testPool.AddCert(leaf)
	})
	return testCert, testPool
}

// startServer serves h on a loopback UDP socket and returns the server and its address.
func startServer(t testing.TB, h func(message.ServerExchange), mod func(*Server)) (*Server, string) {
	t.Helper()
	cert, _ := testCertificate(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := NewSocket(pc)
	s := &Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	if mod != nil {
		mod(s)
	}
	served := make(chan struct{})
	go func() { defer close(served); s.Serve(sock) }()
	t.Cleanup(func() {
		s.Close()
		sock.Close()
		<-served
	})
	return s, pc.LocalAddr().String()
}

// newClient returns an HTTP client speaking HTTP/3 with quic-go's client, trusting the test
// certificate.
func newClient(t testing.TB) (*http.Client, *http3.Transport) {
	_, pool := testCertificate(t)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ClientSessionCache: tls.NewLRUClientSessionCache(8)},
		QUICConfig:      &quic.Config{MaxIdleTimeout: 5 * time.Second},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}, tr
}

// respond writes a complete response from a handler.
func respond(ex message.ServerExchange, status int, h *message.Header, body []byte) {
	resp := &message.Response{Status: status, ContentLength: int64(len(body))}
	if h != nil {
		resp.Header.CopyFrom(h)
	}
	if err := ex.WriteHeader(resp); err != nil {
		ex.Abort(err)
		return
	}
	if len(body) > 0 {
		if _, err := ex.Write(body); err != nil {
			ex.Abort(err)
			return
		}
	}
	ex.Finish(nil)
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
