package acme

import (
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/cluster/clustertest"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/internal/pebbletest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pebbletest.Cleanup()
	os.Exit(code)
}

// TestClusterSharesCertificate: two nodes of a real embedded cluster, started together, manage
// the same name against Pebble with their storage in the cluster's KV bucket. The name's lock
// in the bucket lets one of them order while the other waits and then loads what the first
// stored: one order, one serial served by both.
func TestClusterSharesCertificate(t *testing.T) {
	c := clustertest.Start(t, 2)
	m1 := New(Options{Storage: NewKVStorage(c.Nodes[0].JetStream(), c.Nodes[0].Replicas())})
	defer m1.Close()
	m2 := New(Options{Storage: NewKVStorage(c.Nodes[1].JetStream(), c.Nodes[1].Replicas())})
	defer m2.Close()
	// The plain-HTTP listener the CA validates on, answering through either node.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range []*Manager{m1, m2} {
			if body, ok := m.ServeHTTPChallenge(r.Method, r.Host, r.URL.Path); ok {
				w.Write(body)
				return
			}
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ca := pebbletest.Start(t, ln.Addr().(*net.TCPAddr).Port, 1, time.Hour)

	site := func(m *Manager) *Site {
		s, err := m.Prepare(SiteConfig{
			Listener: "https",
			ACME:     config.ACME{CA: ca.Directory, CARoot: ca.CARoot, Email: "ops@verge.test", DisableTLSALPNChallenge: true},
			Domains:  []string{"c.verge.test"},
			HTTPAddr: ln.Addr().String(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1, s2 := site(m1), site(m2)
	if err := s1.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe() // certmagic logs the peer's address
	defer a.Close()
	defer b.Close()
	waitCert := func(s *Site) *tls.Certificate {
		guard := time.Now().Add(60 * time.Second) // a failure guard for a busy machine
		for {
			if cert, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "c.verge.test", Conn: a}); err == nil && cert.Leaf != nil {
				return cert
			}
			if time.Now().After(guard) {
				t.Fatalf("no certificate; pebble:\n%s", ca.Output())
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	first, second := waitCert(s1), waitCert(s2)
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Errorf("node 2 serves serial %v, node 1 %v", second.Leaf.SerialNumber, first.Leaf.SerialNumber)
	}
	if n := ca.Orders(); n != 1 {
		t.Errorf("two nodes made %d orders, want 1", n)
	}
	if !strings.Contains(ca.Output(), "set VALID by completed challenge") {
		t.Errorf("no challenge validated:\n%s", ca.Output())
	}
}
