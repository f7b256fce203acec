package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bodyCountingOrigin answers "ok" after reading the request body, and records the largest
// body it has read.
func bodyCountingOrigin(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var maxSeen atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(origin.Close)
	return origin, &maxSeen
}

// TestH2BodyLimitAndClientGone runs the binary with limits.max_body 64KiB and an h2c client:
// a declared oversized body gets 413, a streamed one gets 413 with no more than the limit
// reaching the origin (issue 11: a 2 MB POST with a 1 MiB limit got 200), and a client that
// disconnects mid-body is logged as 499 like HTTP/1 (issue 12: it was logged as 500).
func TestH2BodyLimitAndClientGone(t *testing.T) {
	const limit = 64 << 10
	origin, maxSeen := bodyCountingOrigin(t)
	var logPath string
	p := launchVerge(t, func(p *proc) {
		logPath = filepath.Join(p.dir, "access.log")
		y := fmt.Sprintf(`listeners:
  - name: main
    address: %s
    limits: {max_body: 64KiB}
routes:
  - name: proxied
    upstream: app
upstreams:
  - name: app
    servers: [{address: %q}]
admin: {disabled: true}
access_log: {output: %q, fields: [method, path, proto, status]}
pid_file: %q
`, p.addr, strings.TrimPrefix(origin.URL, "http://"), logPath, p.pidFile)
		if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, "verge serving", 10*time.Second, func() bool {
		_, err := p.get(http.DefaultClient, "/")
		return err == nil
	})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}

	resp, err := c.Post("http://"+p.addr+"/declared", "application/octet-stream", bytes.NewReader(make([]byte, 2*limit)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("declared 2x limit over h2: status %d, want 413", resp.StatusCode)
	}

	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 8<<10)
		for i := 0; i < 4*limit/len(chunk); i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err = c.Post("http://"+p.addr+"/streamed", "application/octet-stream", pr)
	pr.CloseWithError(errors.New("done"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("streamed 4x limit over h2: status %d, want 413", resp.StatusCode)
		}
	}
	if got := maxSeen.Load(); got > limit {
		t.Errorf("origin received %d body bytes, want at most %d", got, limit)
	}

	// A client that goes away mid-body.
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	io.WriteString(conn, http2.ClientPreface)
	fr.WriteSettings()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/gone"}, {Name: ":authority", Value: "test"}, {Name: "content-length", Value: "50000"}} {
		enc.WriteField(f)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hbuf.Bytes(), EndHeaders: true})
	fr.WriteData(1, false, make([]byte, 1000))
	// The server reads both frames before it sees the connection end.
	conn.Close()
	var status float64
	waitFor(t, "access log line for /gone", 10*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		for _, line := range strings.Split(string(b), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["path"] == "/gone" {
				status, _ = rec["status"].(float64)
				return true
			}
		}
		return false
	})
	if status != 499 {
		t.Errorf("client gone mid-body over h2 logged as %v, want 499", status)
	}
}

// TestH3BodyLimit runs the binary with HTTP/3 and limits.max_body 64KiB: a declared
// oversized body gets 413 over HTTP/3 too, and a streamed one gets 413 with no more than the
// limit reaching the origin.
func TestH3BodyLimit(t *testing.T) {
	const limit = 64 << 10
	origin, maxSeen := bodyCountingOrigin(t)
	p := launchVerge(t, func(p *proc) {
		writeH3Config(t, p.cfgFile, p.addr, p.pidFile, strings.TrimPrefix(origin.URL, "http://"), "h3")
		b, err := os.ReadFile(p.cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		y := strings.Replace(string(b), "    http3: {enabled: true}\n", "    http3: {enabled: true}\n    limits: {max_body: 64KiB}\n", 1)
		if err := os.WriteFile(p.cfgFile, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	c := h3Client(t)
	waitFor(t, "HTTP/3 serving", 10*time.Second, func() bool {
		got, _ := h3Get(c, p.addr, "/who")
		return got == "h3"
	})
	resp, err := c.Post("https://"+p.addr+"/declared", "application/octet-stream", bytes.NewReader(make([]byte, 2*limit)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.ProtoMajor != 3 {
		t.Errorf("declared 2x limit: %s status %d, want HTTP/3 413", resp.Proto, resp.StatusCode)
	}
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 8<<10)
		for i := 0; i < 4*limit/len(chunk); i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "https://"+p.addr+"/streamed", pr)
	resp, err = c.Do(req)
	pr.CloseWithError(errors.New("done"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("streamed 4x limit: status %d, want 413", resp.StatusCode)
		}
	}
	if got := maxSeen.Load(); got > limit {
		t.Errorf("origin received %d body bytes, want at most %d", got, limit)
	}
}
