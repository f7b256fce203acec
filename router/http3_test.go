package router

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/h3"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and localhost into dir and
// returns the file paths, a pool trusting it and the base64 SHA-256 of its SPKI.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool, spki string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return certFile, keyFile, pool, base64.StdEncoding.EncodeToString(sum[:])
}

// startH3Runtime runs a TLS listener with HTTP/3 enabled and the given routes.
func startH3Runtime(t *testing.T, routes string) (addr string, pool *x509.CertPool, spki string) {
	cert, key, pool, spki := writeTestCert(t, t.TempDir())
	y := fmt.Sprintf(`listeners:
  - name: main
    address: "127.0.0.1:0"
    tls: {certificates: [{cert: %q, key: %q}]}
    http3: {enabled: true}
access_log: {output: "off"}
admin: {disabled: true}
shutdown: {grace_period: 2s}
%s`, cert, key, routes)
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore()}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt.Addr("main").String(), pool, spki
}

func TestHTTP3ListenerAndAltSvc(t *testing.T) {
	addr, pool, _ := startH3Runtime(t, "routes:\n  - name: hello\n    respond: {body: \"hello\"}\n")
	_, port, _ := net.SplitHostPort(addr)
	want := `h3=":` + port + `"; ma=86400`

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		res, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		tr.CloseIdleConnections()
		if got := res.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != want {
			t.Errorf("%s response Alt-Svc: got %q, want [%s]", res.Proto, got, want)
		}
	}

	cc, err := h3.Dial(t.Context(), addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, h3.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := cc.RoundTrip(t.Context(), &message.Request{Method: "GET", Target: "/", Authority: addr})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Status != 200 || string(b) != "hello" || resp.Proto != message.HTTP3 {
		t.Fatalf("over HTTP/3: got %d %s %q, want 200 HTTP/3.0 hello", resp.Status, resp.Proto, b)
	}
	if resp.Header.Has("alt-svc") {
		t.Errorf("HTTP/3 response carries Alt-Svc %q; want none", resp.Header.Get("alt-svc"))
	}
}

// TestChromiumLoadsPageOverHTTP3 is the browser check: headless Chromium, forced onto QUIC
// for Verge's origin and trusting the test certificate by its SPKI hash, loads a page whose
// script writes the navigation's nextHopProtocol into the DOM; the dumped DOM must say "h3".
// It is skipped when no chromium binary is installed (CI installs Debian's chromium).
func TestChromiumLoadsPageOverHTTP3(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed")
	}
	page := `<!doctype html><html><body><p id=p>pending</p><script>` +
		`document.getElementById('p').textContent = 'proto=' + performance.getEntries()[0].nextHopProtocol;` +
		`</script></body></html>`
	routes := fmt.Sprintf("routes:\n  - name: page\n    respond: {body: %q, headers: {Content-Type: \"text/html; charset=utf-8\"}}\n", page)
	addr, _, spki := startH3Runtime(t, routes)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		"--enable-quic", "--origin-to-force-quic-on="+addr,
		"--ignore-certificate-errors-spki-list="+spki,
		"--virtual-time-budget=2000", "--dump-dom", "https://"+addr+"/")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "proto=h3") {
		t.Fatalf("page reported %q; want proto=h3", extractProto(string(out)))
	}
}

func extractProto(dom string) string {
	if i := strings.Index(dom, "id=\"p\">"); i >= 0 {
		rest := dom[i+7:]
		if j := strings.Index(rest, "<"); j >= 0 {
			return rest[:j]
		}
	}
	return dom
}
