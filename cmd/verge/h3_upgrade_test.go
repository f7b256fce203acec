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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// streamChunk and streamEvery shape the slow response that spans the upgrade.
const (
	streamChunk = 1024
	streamEvery = 10 * time.Millisecond
)

// slowStream is the origin's /stream answer: a chunk every streamEvery from its start until
// finish is closed. The test ends it only once the upgrade is done, so the response spans the
// upgrade however long a busy machine takes for it (a fixed length could end before).
type slowStream struct {
	started chan struct{} // closed with the first chunk
	finish  chan struct{}
	end     func()       // closes finish, once
	sent    atomic.Int64 // bytes written
}

// streamingOrigin answers /stream with a slowStream.
func streamingOrigin(t *testing.T) (string, *slowStream) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := &slowStream{started: make(chan struct{}), finish: make(chan struct{})}
	var once sync.Once
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", streamChunk))
		for {
			n, err := w.Write(chunk)
			st.sent.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
			once.Do(func() { close(st.started) })
			select {
			case <-st.finish:
				return
			case <-r.Context().Done():
				return
			case <-time.After(streamEvery):
			}
		}
	})}
	go srv.Serve(ln)
	var finishOnce sync.Once
	st.end = func() { finishOnce.Do(func() { close(st.finish) }) }
	t.Cleanup(func() { st.end(); srv.Close() })
	return ln.Addr().String(), st
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
	origin, stream := streamingOrigin(t)
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
	select { // the response is streaming on the old process's connection
	case <-stream.started:
	case <-time.After(30 * time.Second): // a failure guard
		t.Fatal("the streamed response never started")
	}

	writeH3Config(t, p.cfgFile, p.addr, p.pidFile, origin, "new")
	p.cmd.Process.Signal(syscall.SIGUSR2)
	var newPID int
	waitFor(t, "the new process to write its pid", 10*time.Second, func() bool {
		pid, err := readPID(p.pidFile)
		newPID = pid
		return err == nil && pid != oldPID
	})
	// Until the old process has handed the socket over it still reads it, and a connection
	// attempt it begins then is served by it (not refused): wait for the hand-over.
	waitFor(t, "the old process to hand the UDP socket over", 20*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), "HTTP/3 hand-over started")
	})
	for i := range 20 {
		if got, err := h3Get(h3Client(t), p.addr, "/who"); got != "new" {
			t.Fatalf("new connection %d after the upgrade: got %q, %v; want new", i, got, err)
		}
	}
	// The upgrade is done and new connections go to the new process: let the origin finish.
	select {
	case r := <-streamed:
		t.Fatalf("response ended during the upgrade: %d bytes, %v", r.n, r.err)
	default:
	}
	stream.end()
	select {
	case r := <-streamed:
		want := int(stream.sent.Load())
		if r.err != nil || r.n != want {
			t.Fatalf("response across the upgrade: %d bytes, %v; want the %d bytes the origin sent", r.n, r.err, want)
		}
		// Lost datagrams would add retransmission timeouts to its time.
		t.Logf("response across the upgrade: %d bytes in %v", r.n, r.d)
	case <-time.After(30 * time.Second): // a failure guard
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
