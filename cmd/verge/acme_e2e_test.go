package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/pebbletest"
)

// These tests run Verge against Pebble, Let's Encrypt's ACME test server, on loopback
// (internal/pebbletest): Pebble validates for real, connecting to Verge's listeners for HTTP-01
// and TLS-ALPN-01.

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// servedCert returns the leaf Verge presents at addr for the server name, unverified.
func servedCert(addr, name string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitCert polls the handshake until Verge presents a certificate for name that verify
// accepts.
func waitCert(t *testing.T, p *proc, addr, name string, accept func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	var got *x509.Certificate
	guard := time.Now().Add(90 * time.Second) // a failure guard for a busy machine
	for {
		if c, err := servedCert(addr, name); err == nil && accept(c) {
			got = c
			break
		}
		if time.Now().After(guard) {
			t.Fatalf("no certificate for %s from %s; verge stderr:\n%s", name, addr, p.stderr.String())
		}
		select {
		case err := <-p.exited:
			t.Fatalf("verge exited: %v\n%s", err, p.stderr.String())
		case <-time.After(50 * time.Millisecond): // poll interval
		}
	}
	return got
}

// acmeConfig is a Verge config with a plain listener and an ACME listener for a.verge.test.
func acmeConfig(plain, secure, pidFile, data, origin string, ca *pebbletest.CA, acmeExtra string) string {
	return fmt.Sprintf(`listeners:
  - name: plain
    address: %s
    redirect_https: true
  - name: secure
    address: %s
    tls:
      acme:
        email: ops@verge.test
        ca: %s
        ca_root: %s
%s
routes:
  - name: site
    match: {host: a.verge.test}
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
worker_data: %q
shutdown: {grace_period: 1s}
`, plain, secure, ca.Directory, ca.CARoot, acmeExtra, origin, pidFile, data)
}

// startACMEVerge runs verge on cfg (written into a new directory).
func startACMEVerge(t *testing.T, cfg func(pidFile string) string) *proc {
	return launchVerge(t, func(p *proc) {
		if err := os.WriteFile(p.cfgFile, []byte(cfg(p.pidFile)), 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

func stopVerge(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("verge did not stop; stderr:\n%s", p.stderr.String())
	}
}

// TestACMEHTTP01RestartAndRedirect: a certificate for a.verge.test is obtained from Pebble
// through HTTP-01 (answered on the plain listener, which redirects everything else to
// https), served and trusted; an SNI for a name not configured orders nothing; a restart
// serves the stored certificate without a new order.
func TestACMEHTTP01RestartAndRedirect(t *testing.T) {
	origin := testOrigin(t, "hello over acme")
	plain, secure := freePort(t), freePort(t)
	ca := pebbletest.Start(t, portOf(t, plain), portOf(t, secure), time.Hour)
	data := filepath.Join(t.TempDir(), "data")
	cfg := func(pid string) string {
		return acmeConfig(plain, secure, pid, data, origin, ca, "        disable_tls_alpn_challenge: true")
	}
	p := startACMEVerge(t, cfg)
	isPebbles := func(c *x509.Certificate) bool {
		return c.Issuer.CommonName != "" && len(c.DNSNames) == 1 && c.DNSNames[0] == "a.verge.test"
	}
	first := waitCert(t, p, secure, "a.verge.test", isPebbles)

	// The chain verifies against Pebble's root, and the site is served over it.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Roots, ServerName: "a.verge.test"}}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "https://"+secure+"/hello", nil)
	req.Host = "a.verge.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("https request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello over acme" {
		t.Errorf("https body %q", body)
	}
	orders := ca.Orders()
	if orders != 1 {
		t.Errorf("pebble saw %d orders, want 1", orders)
	}

	// The plain listener redirects to https on the TLS listener's port.
	req, _ = http.NewRequest("GET", "http://"+plain+"/path?q=1", nil)
	req.Host = "a.verge.test"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(secure)
	if want := "https://a.verge.test:" + port + "/path?q=1"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
		t.Errorf("redirect: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// A Host nobody configured is not redirected (no open redirect): 421.
	req, _ = http.NewRequest("GET", "http://"+plain+"/path", nil)
	req.Host = "evil.verge.test"
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 421 || resp.Header.Get("Location") != "" {
		t.Errorf("redirect for an unknown host: %d %q, want 421 without Location", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A challenge path with an unknown token is not answered with a key authorization.
	req, _ = http.NewRequest("GET", "http://"+plain+"/.well-known/acme-challenge/forged-token", nil)
	req.Host = "a.verge.test"
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown challenge token: status %d, want 404", resp.StatusCode)
	}

	// An attacker's SNI for a name not configured gets no certificate and orders nothing
	// (certificates are never obtained on demand, not even during the handshake).
	if cert, err := servedCert(secure, "evil.verge.test"); err == nil {
		t.Errorf("handshake for an unconfigured name succeeded with %v", cert.DNSNames)
	}
	if n := ca.Orders(); n != orders {
		t.Errorf("an SNI for an unconfigured name caused %d new orders", n-orders)
	}
	if strings.Contains(p.stderr.String(), "evil.verge.test") && strings.Contains(p.stderr.String(), "ordering") {
		t.Errorf("verge ordered for evil.verge.test:\n%s", p.stderr.String())
	}

	// Keys are stored readable by the owner only.
	keys, _ := filepath.Glob(filepath.Join(data, "acme", "certificates", "*", "*", "*.key"))
	if len(keys) == 0 {
		t.Fatalf("no key stored under %s", filepath.Join(data, "acme"))
	}
	for _, k := range keys {
		if st, err := os.Stat(k); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", k, st.Mode().Perm(), err)
		}
	}

	// A reload that adds a host orders it alone; the first name keeps its certificate.
	two := func(pid string) string {
		return strings.Replace(cfg(pid), "match: {host: a.verge.test}", "match: {host: [a.verge.test, b.verge.test]}", 1)
	}
	if err := os.WriteFile(p.cfgFile, []byte(two(p.pidFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(verge(t), "reload", "-c", p.cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("verge reload: %v\n%s", err, out)
	}
	waitCert(t, p, secure, "b.verge.test", func(c *x509.Certificate) bool { return len(c.DNSNames) == 1 && c.DNSNames[0] == "b.verge.test" })
	if again, err := servedCert(secure, "a.verge.test"); err != nil || again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after the reload a.verge.test is served %v, %v; want the first certificate", again, err)
	}
	if n := ca.Orders(); n != orders+1 {
		t.Errorf("the reload caused %d orders, want 1 (for b.verge.test)", n-orders)
	}
	orders = ca.Orders()

	// A restart serves the stored certificates: same serial, no new order.
	stopVerge(t, p)
	p2 := startACMEVerge(t, two)
	again := waitCert(t, p2, secure, "a.verge.test", isPebbles)
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after restart the serial is %v, want the stored %v", again.SerialNumber, first.SerialNumber)
	}
	if n := ca.Orders(); n != orders {
		t.Errorf("the restart caused %d new orders", n-orders)
	}
}

// TestACMETLSALPN01Renewal: with HTTP-01 off, the certificate is obtained through
// TLS-ALPN-01 answered in Verge's handshake; the CA's short-lived certificate is renewed
// before it expires and the new one is served.
func TestACMETLSALPN01Renewal(t *testing.T) {
	origin := testOrigin(t, "renewed")
	plain, secure := freePort(t), freePort(t)
	const validity = 30 * time.Second
	ca := pebbletest.Start(t, portOf(t, plain), portOf(t, secure), validity)
	data := filepath.Join(t.TempDir(), "data")
	p := startACMEVerge(t, func(pid string) string {
		return acmeConfig(plain, secure, pid, data, origin, ca, `        disable_http_challenge: true
        profile: shortlived
        renewal_window_ratio: 0.5
        renew_interval: 1s`)
	})
	ours := func(c *x509.Certificate) bool { return len(c.DNSNames) == 1 && c.DNSNames[0] == "a.verge.test" }
	first := waitCert(t, p, secure, "a.verge.test", ours)
	if life := first.NotAfter.Sub(first.NotBefore); life > 2*validity {
		t.Fatalf("certificate lifetime %v; the shortlived profile was not used", life)
	}
	if out := ca.Output(); !strings.Contains(out, "set VALID by completed challenge") || strings.Contains(out, "validate w/ HTTP") {
		t.Errorf("pebble did not validate with tls-alpn-01 alone:\n%s", out)
	}
	renewed := waitCert(t, p, secure, "a.verge.test", func(c *x509.Certificate) bool {
		return ours(c) && c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if !renewed.NotBefore.Before(first.NotAfter) {
		t.Errorf("the renewal was issued at %v, after the first certificate expired (%v)", renewed.NotBefore, first.NotAfter)
	}
	if _, err := renewed.Verify(x509.VerifyOptions{Roots: ca.Roots, DNSName: "a.verge.test", Intermediates: x509.NewCertPool()}); err != nil {
		// Pebble's chain has an intermediate; fetch it through a full handshake instead.
		conn, err := tls.Dial("tcp", secure, &tls.Config{RootCAs: ca.Roots, ServerName: "a.verge.test"})
		if err != nil {
			t.Errorf("renewed certificate does not verify: %v", err)
		} else {
			conn.Close()
		}
	}
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	sawRenewal := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "acme: certificate obtained") && strings.Contains(sc.Text(), "renewal=true") {
			sawRenewal = true
		}
	}
	if !sawRenewal {
		t.Errorf("no renewal logged:\n%s", p.stderr.String())
	}
}

// TestACMEExampleValidates: `verge validate` accepts examples/acme.yaml and refuses acme
// settings that cannot work, naming the field.
func TestACMEExampleValidates(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"validate", "-c", "../../examples/acme.yaml"}, &stdout, &stderr); code != 0 || stdout.String() != "ok\n" {
		t.Fatalf("validate examples/acme.yaml: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`listeners:
  - name: https
    address: 127.0.0.1:8443
    tls:
      acme: {ca: "http://insecure.example/dir"}
routes:
  - respond: {body: "x"}
`), 0o644)
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"validate", "-c", bad}, &stdout, &stderr)
	for _, want := range []string{"listeners[0].tls.acme.ca: ca must be an https:// URL", "listeners[0].tls.acme.domains: no host names"} {
		if code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("validate bad acme: code %d, stderr %q, want %q", code, stderr.String(), want)
		}
	}
}
