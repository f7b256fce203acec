package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProxyTLSInternalKeepsCA: two starts of `verge proxy --tls-internal` serve leaves of the
// same local CA (kept in the user cache directory), the second reusing the stored leaf; a
// client trusting only that CA verifies them, and the trust instructions are printed.
func TestProxyTLSInternalKeepsCA(t *testing.T) {
	origin := testOrigin(t, "internal tls")
	cache := t.TempDir()
	var caPEM [2][]byte
	for i := range 2 {
		cmd := exec.Command(verge(t), "proxy", "--tls-internal", "--listen", "127.0.0.1:0", "--upstream", "http://"+origin, "--access-log", "off")
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache)
		var stdout bytes.Buffer
		stderr := newLogFile(t)
		cmd.Stdout, cmd.Stderr = &stdout, stderr.f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		addr := listeningAddr(t, stderr, "proxy", exited)
		caFile := filepath.Join(cache, "verge", "tls-internal", "ca.pem")
		b, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		caPEM[i] = b
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(b)
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://" + strings.Replace(addr, "127.0.0.1", "localhost", 1) + "/")
		if err != nil {
			t.Errorf("start %d: https with the local CA trusted: %v", i+1, err)
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "internal tls" {
				t.Errorf("start %d: body %q", i+1, body)
			}
		}
		cmd.Process.Signal(syscall.SIGINT)
		<-exited
		out := stdout.String()
		for _, want := range []string{"curl --cacert " + caFile, "update-ca-certificates", "security add-trusted-cert"} {
			if !strings.Contains(out, want) {
				t.Errorf("start %d: output lacks %q:\n%s", i+1, want, out)
			}
		}
		if wantReuse := i == 1; strings.Contains(out, "reusing the stored certificate") != wantReuse {
			t.Errorf("start %d: reuse of the stored leaf is not %v:\n%s", i+1, wantReuse, out)
		}
	}
	if !bytes.Equal(caPEM[0], caPEM[1]) {
		t.Error("the second start made a new CA")
	}
}

// TestProxyTLSInternalDataDir: --data puts the local CA under the given data directory.
func TestProxyTLSInternalDataDir(t *testing.T) {
	origin := testOrigin(t, "internal tls")
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(verge(t), "proxy", "--tls-internal", "--data", data, "--listen", "127.0.0.1:0", "--upstream", "http://"+origin, "--access-log", "off")
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "STATE_DIRECTORY=")
	var stdout bytes.Buffer
	stderr := newLogFile(t)
	cmd.Stdout, cmd.Stderr = &stdout, stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	listeningAddr(t, stderr, "proxy", exited)
	cmd.Process.Signal(syscall.SIGINT)
	<-exited
	caFile := filepath.Join(data, "tls-internal", "ca.pem")
	if _, err := os.Stat(caFile); err != nil {
		t.Fatalf("CA not in the data directory: %v", err)
	}
	if st, err := os.Stat(filepath.Join(data, "tls-internal", "ca-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", st, err)
	}
	if !strings.Contains(stdout.String(), "curl --cacert "+caFile) {
		t.Fatalf("output does not name the CA in the data directory:\n%s", stdout.String())
	}
}
