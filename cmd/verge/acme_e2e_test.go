package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests run Verge against Pebble, Let's Encrypt's ACME test server, built from the
// module in go.mod (a tool dependency) and started on loopback. Pebble validates for real:
// it resolves the test names with a DNS server of the test (every name is 127.0.0.1) and
// connects to Verge's listeners for HTTP-01 and TLS-ALPN-01.

var (
	pebbleOnce sync.Once
	pebbleBin  string
	pebbleDir  string // the module's directory: test certificates
	pebbleErr  error
)

// pebble builds the pebble command once per test run.
func pebble(t *testing.T) (bin, moduleDir string) {
	t.Helper()
	pebbleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "verge-pebble-")
		if err != nil {
			pebbleErr = err
			return
		}
		pebbleBin = filepath.Join(dir, "pebble")
		if out, err := exec.Command("go", "build", "-o", pebbleBin, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput(); err != nil {
			pebbleErr = fmt.Errorf("go build pebble: %v\n%s", err, out)
			return
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
		if err != nil {
			pebbleErr = fmt.Errorf("go list pebble: %v", err)
			return
		}
		pebbleDir = strings.TrimSpace(string(out))
	})
	if pebbleErr != nil {
		t.Fatal(pebbleErr)
	}
	return pebbleBin, pebbleDir
}

// loopbackDNS answers every A query with 127.0.0.1 (and AAAA with no address), over TCP as
// Pebble asks. It returns the server's address.
func loopbackDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// pebbleCA is a running Pebble.
type pebbleCA struct {
	dir      string // ACME directory URL
	mgmt     string // management address
	caRoot   string // the PEM file Pebble's own HTTPS certificate chains to
	stdout   *logFile
	rootPool *x509.CertPool // the roots Pebble issues under, once fetched
}

// startPebble runs Pebble validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort, with
// the given validity of the "shortlived" profile (seconds).
func startPebble(t *testing.T, httpPort, tlsPort string, shortValidity int) *pebbleCA {
	t.Helper()
	bin, mod := pebble(t)
	listen, mgmt := freePort(t), freePort(t)
	hp, tp := atoi(t, httpPort), atoi(t, tlsPort)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                hp,
		"tlsPort":                 tp,
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default":    map[string]any{"description": "90 days", "validityPeriod": 7776000},
			"shortlived": map[string]any{"description": "for renewal tests", "validityPeriod": shortValidity},
		},
	}}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pebble.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pebbleCA{dir: "https://" + listen + "/dir", mgmt: mgmt, caRoot: filepath.Join(mod, "test/certs/pebble.minica.pem"), stdout: newLogFile(t)}
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", loopbackDNS(t))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.stdout.f, p.stdout.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.stdout.String())
		}
	})
	pool, err := readPool(p.caRoot)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitFor(t, "pebble to serve its directory", 30*time.Second, func() bool {
		resp, err := c.Get(p.dir)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	resp, err := c.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.rootPool = x509.NewCertPool()
	if !p.rootPool.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root: %q", root)
	}
	return p
}

// orders counts the orders Pebble has received.
func (p *pebbleCA) orders() int { return strings.Count(p.stdout.String(), "Added order") }

func readPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", file)
	}
	return pool, nil
}

func atoi(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(port, &n)
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
func acmeConfig(plain, secure, pidFile, data, origin string, ca *pebbleCA, acmeExtra string) string {
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
`, plain, secure, ca.dir, ca.caRoot, acmeExtra, origin, pidFile, data)
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
	ca := startPebble(t, plain, secure, 3600)
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
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.rootPool, ServerName: "a.verge.test"}}
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
	orders := ca.orders()
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
	if n := ca.orders(); n != orders {
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

	// A restart serves the stored certificate: same serial, no new order.
	stopVerge(t, p)
	p2 := startACMEVerge(t, cfg)
	again := waitCert(t, p2, secure, "a.verge.test", isPebbles)
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after restart the serial is %v, want the stored %v", again.SerialNumber, first.SerialNumber)
	}
	if n := ca.orders(); n != orders {
		t.Errorf("the restart caused %d new orders", n-orders)
	}
}

// TestACMETLSALPN01Renewal: with HTTP-01 off, the certificate is obtained through
// TLS-ALPN-01 answered in Verge's handshake; the CA's short-lived certificate is renewed
// before it expires and the new one is served.
func TestACMETLSALPN01Renewal(t *testing.T) {
	origin := testOrigin(t, "renewed")
	plain, secure := freePort(t), freePort(t)
	const validity = 30 // seconds
	ca := startPebble(t, plain, secure, validity)
	data := filepath.Join(t.TempDir(), "data")
	p := startACMEVerge(t, func(pid string) string {
		return acmeConfig(plain, secure, pid, data, origin, ca, `        disable_http_challenge: true
        profile: shortlived
        renewal_window_ratio: 0.5
        renew_interval: 1s`)
	})
	ours := func(c *x509.Certificate) bool { return len(c.DNSNames) == 1 && c.DNSNames[0] == "a.verge.test" }
	first := waitCert(t, p, secure, "a.verge.test", ours)
	if life := first.NotAfter.Sub(first.NotBefore); life > 2*validity*time.Second {
		t.Fatalf("certificate lifetime %v; the shortlived profile was not used", life)
	}
	if out := ca.stdout.String(); !strings.Contains(out, "set VALID by completed challenge") || strings.Contains(out, "validate w/ HTTP") {
		t.Errorf("pebble did not validate with tls-alpn-01 alone:\n%s", out)
	}
	renewed := waitCert(t, p, secure, "a.verge.test", func(c *x509.Certificate) bool {
		return ours(c) && c.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if !renewed.NotBefore.Before(first.NotAfter) {
		t.Errorf("the renewal was issued at %v, after the first certificate expired (%v)", renewed.NotBefore, first.NotAfter)
	}
	if _, err := renewed.Verify(x509.VerifyOptions{Roots: ca.rootPool, DNSName: "a.verge.test", Intermediates: x509.NewCertPool()}); err != nil {
		// Pebble's chain has an intermediate; fetch it through a full handshake instead.
		conn, err := tls.Dial("tcp", secure, &tls.Config{RootCAs: ca.rootPool, ServerName: "a.verge.test"})
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
