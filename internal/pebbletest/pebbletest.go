// Package pebbletest runs Pebble, Let's Encrypt's ACME test server, on loopback for tests.
// The pebble command is built from the module in go.mod (a tool dependency, so the build works
// from the module cache offline). Pebble validates for real: it resolves every name to
// 127.0.0.1 through a DNS server of the test and connects to the given ports for HTTP-01 and
// TLS-ALPN-01.
package pebbletest

import (
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

var (
	buildOnce sync.Once
	bin       string
	modDir    string
	buildErr  error
)

// build builds the pebble command once per test binary into a directory removed by Cleanup.
func build() (string, string, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "verge-pebble-")
		if err != nil {
			buildErr = err
			return
		}
		bin = filepath.Join(dir, "pebble")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build pebble: %v\n%s", err, out)
			return
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
		if err != nil {
			buildErr = fmt.Errorf("go list pebble: %v", err)
			return
		}
		modDir = strings.TrimSpace(string(out))
	})
	return bin, modDir, buildErr
}

// Cleanup removes the built command; call it from TestMain after m.Run.
func Cleanup() {
	if bin != "" {
		os.RemoveAll(filepath.Dir(bin))
	}
}

// CA is a running Pebble.
type CA struct {
	// Directory is the ACME directory URL.
	Directory string
	// CARoot is the PEM file that Pebble's own HTTPS certificate chains to (acme.ca_root).
	CARoot string
	// Roots holds the root Pebble issues certificates under.
	Roots *x509.CertPool
	out   *os.File
}

// Output returns what Pebble logged so far.
func (ca *CA) Output() string {
	b, _ := os.ReadFile(ca.out.Name())
	return string(b)
}

// Orders counts the orders Pebble has received.
func (ca *CA) Orders() int { return strings.Count(ca.Output(), "Added order") }

// Start runs Pebble validating HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort; its profile
// "shortlived" issues certificates valid for shortValidity, "default" for 90 days. It is
// stopped when the test ends.
func Start(t testing.TB, httpPort, tlsPort int, shortValidity time.Duration) *CA {
	t.Helper()
	bin, mod, err := build()
	if err != nil {
		t.Fatal(err)
	}
	listen, mgmt := freeAddr(t), freeAddr(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles": map[string]any{
			"default":    map[string]any{"description": "90 days", "validityPeriod": 90 * 24 * 3600},
			"shortlived": map[string]any{"description": "for renewal tests", "validityPeriod": int(shortValidity.Seconds())},
		},
	}}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pebble.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Directory: "https://" + listen + "/dir", CARoot: filepath.Join(mod, "test/certs/pebble.minica.pem"), out: out}
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", loopbackDNS(t))
	// Real validation, without Pebble's random sleeps, bad nonces or authorization reuse.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = out, out
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
			<-exited
		}
		if t.Failed() {
			t.Logf("pebble output:\n%s", ca.Output())
		}
		out.Close()
	})
	pem, err := os.ReadFile(ca.CARoot)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	guard := time.Now().Add(30 * time.Second) // a failure guard for a busy machine
	for {
		resp, err := c.Get(ca.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(guard) {
			t.Fatalf("pebble did not serve its directory: %v\n%s", err, ca.Output())
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited:\n%s", ca.Output())
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
	resp, err := c.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ca.Roots = x509.NewCertPool()
	if !ca.Roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root: %q", root)
	}
	return ca
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// loopbackDNS answers every A query with 127.0.0.1 (AAAA with no address) over TCP, as
// Pebble asks, and returns its address.
func loopbackDNS(t testing.TB) string {
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
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}
