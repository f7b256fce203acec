package upstream

import (
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
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/message"
)

// testCA is a self-signed CA with a server leaf (origin.test, localhost, 127.0.0.1) and a
// client leaf.
type testCA struct {
	pool       *x509.CertPool
	server     tls.Certificate
	client     tls.Certificate
	clientPool *x509.CertPool
}

var (
	caOnce sync.Once
	ca     *testCA
)

func getCA(t testing.TB) *testCA {
	caOnce.Do(func() { ca = newTestCA() })
	return ca
}

func newTestCA() *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "verge test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(err)
	caCert, err := x509.ParseCertificate(der)
	must(err)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		lt := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "origin.test"},
			DNSNames:     []string{"origin.test", "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		d, err := x509.CreateCertificate(rand.Reader, lt, caCert, &lk.PublicKey, key)
		must(err)
		return tls.Certificate{Certificate: [][]byte{d}, PrivateKey: lk}
	}
	c := &testCA{pool: x509.NewCertPool(), clientPool: x509.NewCertPool()}
	c.pool.AddCert(caCert)
	c.clientPool.AddCert(caCert)
	c.server = leaf(2, x509.ExtKeyUsageServerAuth)
	c.client = leaf(3, x509.ExtKeyUsageClientAuth)
	return c
}

// origin is a loopback test server counting accepted connections.
type origin struct {
	*httptest.Server
	ln *countingListener
	mu sync.Mutex
	// snis records the SNI of each TLS handshake.
	snis []string
}

func (o *origin) accepted() int { return o.ln.count() }

func (o *origin) sniList() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.snis...)
}

// newOrigin starts an origin with handler h (nil: 200 "hello"). tlsCfg non-nil starts TLS with
// it (certificates default to the test CA's server leaf); h2 enables HTTP/2 (ALPN on TLS,
// prior-knowledge h2c without).
// setup hooks run before the server starts.
func newOrigin(t testing.TB, h http.Handler, tlsCfg *tls.Config, h2 bool, setup ...func(*httptest.Server)) *origin {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{ln: &countingListener{Listener: ln}}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = o.ln
	for _, f := range setup {
		f(s)
	}
	if tlsCfg != nil {
		cfg := tlsCfg.Clone()
		if len(cfg.Certificates) == 0 {
			cfg.Certificates = []tls.Certificate{getCA(t).server}
		}
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			o.mu.Lock()
			o.snis = append(o.snis, hello.ServerName)
			o.mu.Unlock()
			return nil, nil
		}
		s.TLS = cfg
		s.EnableHTTP2 = h2
		s.StartTLS()
	} else {
		if h2 {
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			s.Config.Protocols = &p
		}
		s.Start()
	}
	o.Server = s
	t.Cleanup(s.Close)
	return o
}

// newTestTransport returns tr (or a zero Transport), closed at cleanup.
func newTestTransport(t testing.TB, tr *Transport) *Transport {
	if tr == nil {
		tr = &Transport{}
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func get(target string) *message.Request {
	return &message.Request{Method: "GET", Target: target, Proto: message.HTTP11, Authority: "origin.test"}
}

// readAll reads and closes a response body.
func readAll(t testing.TB, resp *message.Response) string {
	t.Helper()
	if resp.Body == nil {
		return ""
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}
