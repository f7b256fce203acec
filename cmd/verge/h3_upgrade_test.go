package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// streamChunks and streamEvery shape the slow response that spans the upgrade.
const (
	streamChunks = 150
	streamChunk  = 1024
	streamEvery  = 10 * time.Millisecond
)

// streamingOrigin answers /stream with streamChunks chunks, one every streamEvery.
func streamingOrigin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", streamChunk))
		for range streamChunks {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(streamEvery)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func writeH3Config(t *testing.T, path, listen, pidFile, origin, who string) {
	t.Helper()
	certs, err := filepath.Abs("../../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
    tls:
      certificates:
        - cert: %s
          key: %s
    http3: {enabled: true}
routes:
  - name: who
    match: {path: /who}
    respond: {body: %q}
  - name: proxied
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
admin: {disabled: true}
access_log: {output: "off"}
pid_file: %q
shutdown: {grace_period: 10s}
`, listen, filepath.Join(certs, "localhost.pem"), filepath.Join(certs, "localhost-key.pem"), who, origin, pidFile)
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
}

func h3Client(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile("../../examples/certs/localhost.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
		QUICConfig:      &quic.Config{MaxIdleTimeout: 10 * time.Second},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func h3Get(c *http.Client, addr, path string) (string, error) {
	resp, err := c.Get("https://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.ProtoMajor != 3 || resp.StatusCode != 200 {
		return "", fmt.Errorf("%s status %d: %s", resp.Proto, resp.StatusCode, b)
	}
	return string(b), nil
}

// TestUpgradeHTTP3 upgrades a verge process serving HTTP/3 with SIGUSR2 while a response
// streams on a QUIC connection of the old process: the response completes on time and
// intact (its datagrams reach the old process through the new one), new QUIC connections
// are served by the new process, and the old process exits once its connection is done.
func TestUpgradeHTTP3(t *testing.T) {
	origin := streamingOrigin(t)
	p := launchVerge(t, func(p *proc) { writeH3Config(t, p.cfgFile, p.addr, p.pidFile, origin, "old") })
	oldPID := p.cmd.Process.Pid
	waitFor(t, "the old process's pid file", 10*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		return err == nil && pid == oldPID
	})
	oldClient := h3Client(t)
	waitFor(t, "HTTP/3 on the old process", 10*time.Second, func() bool {
		got, _ := h3Get(oldClient, p.addr, "/who")
		return got == "old"
	})

	// A response that spans the upgrade, on the old process's connection.
	type result struct {
		n   int
		err error
		d   time.Duration
	}
	streamed := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, err := oldClient.Get("https://" + p.addr + "/stream")
		if err != nil {
			streamed <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		streamed <- result{len(b), err, time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond)

	writeH3Config(t, p.cfgFile, p.addr, p.pidFile, origin, "new")
	p.cmd.Process.Signal(syscall.SIGUSR2)
	var newPID int
	waitFor(t, "the new process to write its pid", 10*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		newPID = pid
		return err == nil && pid != oldPID
	})
	for i := range 20 {
		if got, err := h3Get(h3Client(t), p.addr, "/who"); got != "new" {
			t.Fatalf("new connection %d after the upgrade: got %q, %v; want new", i, got, err)
		}
	}
	select {
	case r := <-streamed:
		want := streamChunks * streamChunk
		if r.err != nil || r.n != want {
			t.Fatalf("response across the upgrade: %d bytes, %v; want %d bytes", r.n, r.err, want)
		}
		// Unhindered, it takes streamChunks*streamEvery (1.5s plus scheduling); lost
		// datagrams would add retransmission timeouts.
		t.Logf("response across the upgrade: %d bytes in %v", r.n, r.d)
	case <-time.After(10 * time.Second):
		t.Fatal("response across the upgrade did not finish")
	}
	select {
	case <-p.exited:
		p.exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("old process did not exit after its QUIC connection was done")
	}
	if got, err := h3Get(h3Client(t), p.addr, "/who"); got != "new" {
		t.Fatalf("after the old process exited: got %q, %v", got, err)
	}
	// The old process got its connection's datagrams from the new one, and lost none.
	m := regexp.MustCompile(`HTTP/3 hand-over done"? datagrams=(\d+) dropped=(\d+)`).FindStringSubmatch(p.stderr.String())
	if m == nil || m[1] == "0" || m[2] != "0" {
		t.Fatalf("old process's hand-over log: %q; want datagrams > 0, dropped 0", m)
	}
	t.Logf("old process received %s datagrams through the hand-over", m[1])
	syscall.Kill(newPID, syscall.SIGTERM)
	waitFor(t, "the new process to exit", 10*time.Second, func() bool {
		return syscall.Kill(newPID, 0) != nil
	})
}
