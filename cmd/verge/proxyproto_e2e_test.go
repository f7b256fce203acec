package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/proxyproto"
)

// ppOrigin is an HTTP origin that requires a PROXY header on every connection and answers
// with the client address it named, the connection's number and the X-Forwarded-For field.
type ppOrigin struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	local int // connections that sent a LOCAL header (health checks)
}

func startPPOrigin(t *testing.T) *ppOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &ppOrigin{ln: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client=%s xff=%s", r.RemoteAddr, r.Header.Get("X-Forwarded-For"))
	})}
	go srv.Serve(&ppTestListener{o: o})
	t.Cleanup(func() { srv.Close() })
	return o
}

type ppTestListener struct{ o *ppOrigin }

func (l *ppTestListener) Accept() (net.Conn, error) {
	for {
		c, err := l.o.ln.Accept()
		if err != nil {
			return nil, err
		}
		h, rest, err := proxyproto.Read(c, 5*time.Second)
		if err != nil {
			c.Close() // no header: refused, as a server behind send_proxy_protocol must
			continue
		}
		l.o.mu.Lock()
		l.o.conns++
		if h.Local {
			l.o.local++
		}
		l.o.mu.Unlock()
		remote := c.RemoteAddr()
		if !h.Local {
			remote = net.TCPAddrFromAddrPort(h.Src)
		}
		return &testPrefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(rest), c), remote: remote}, nil
	}
}

func (l *ppTestListener) Close() error   { return l.o.ln.Close() }
func (l *ppTestListener) Addr() net.Addr { return l.o.ln.Addr() }

type testPrefixConn struct {
	net.Conn
	r      io.Reader
	remote net.Addr
}

func (c *testPrefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *testPrefixConn) RemoteAddr() net.Addr       { return c.remote }

// rawRequest sends prefix (a PROXY header or nothing) and then GET path on a new connection
// to addr, and returns the response (nil with the error when the connection is closed
// without one).
func rawRequest(addr string, prefix []byte, path string) (*http.Response, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append(append([]byte(nil), prefix...), "GET "+path+" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"...)
	if _, err := c.Write(msg); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func ppHeader(t *testing.T, v uint8, src string) []byte {
	t.Helper()
	b, err := proxyproto.Format(v, netip.MustParseAddrPort(src), netip.MustParseAddrPort("198.51.100.1:80"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRunProxyProtocol runs `verge run` with a listener that takes PROXY headers from
// loopback and one that trusts no loopback peer, in front of an origin that reads X-
// Forwarded-For and one that requires a PROXY header (send_proxy_protocol: v2).
func TestRunProxyProtocol(t *testing.T) {
	echo := testOriginFunc(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s", r.Header.Get("X-Forwarded-For"))
	})
	pp := startPPOrigin(t)
	untrusted := freePort(t)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	p := launchVerge(t, func(p *proc) {
		y := fmt.Sprintf(`listeners:
  - name: main
    address: %q
    proxy_protocol: {trusted: [127.0.0.0/8], timeout: 5s}
    ip_rules: {deny: [203.0.113.66]}
  - name: other
    address: %q
    proxy_protocol: {trusted: [192.0.2.0/24]}
routes:
  - {name: echo, match: {path_prefix: /echo}, upstream: echo}
  - {name: pp, match: {path_prefix: /pp}, upstream: pp}
upstreams:
  - {name: echo, servers: [{address: %q}]}
  - name: pp
    servers: [{address: %q}]
    send_proxy_protocol: v2
    health_check: {type: http, interval: 300ms, timeout: 250ms}
admin: {disabled: true}
access_log: {output: %q, format: json}
pid_file: %q
`, p.addr, untrusted, echo, pp.ln.Addr().String(), accessLog, p.pidFile)
		os.WriteFile(p.cfgFile, []byte(y), 0o644)
	})
	hdr := ppHeader(t, 1, "203.0.113.7:40000")
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		_, _, err := rawRequest(p.addr, hdr, "/echo")
		return err == nil
	})

	for _, v := range []uint8{1, 2} {
		resp, body, err := rawRequest(p.addr, ppHeader(t, v, "203.0.113.7:40000"), "/echo")
		if err != nil || resp.StatusCode != 200 || body != "xff=203.0.113.7" {
			t.Errorf("v%d through a trusted peer: got %v %q, %v; want 200 xff=203.0.113.7", v, resp, body, err)
		}
	}
	// ip_rules see the address of the header.
	if resp, _, err := rawRequest(p.addr, ppHeader(t, 2, "203.0.113.66:1"), "/echo"); err == nil {
		t.Errorf("a denied client behind the balancer: got %d, want the connection refused", resp.StatusCode)
	}
	// A trusted peer must send the header.
	if resp, _, err := rawRequest(p.addr, nil, "/echo"); err == nil {
		t.Errorf("no header from a trusted peer: got %d, want the connection closed", resp.StatusCode)
	}
	// A v2 LOCAL header (the balancer's own health check) keeps the peer's address.
	if resp, body, err := rawRequest(p.addr, must(proxyproto.Format(2, netip.AddrPort{}, netip.AddrPort{})), "/echo"); err != nil || body != "xff=127.0.0.1" {
		t.Errorf("LOCAL: got %v %q, %v; want xff=127.0.0.1", resp, body, err)
	}
	// An untrusted peer cannot spoof its address: its header is not taken.
	resp, body, err := rawRequest(untrusted, ppHeader(t, 1, "203.0.113.99:1"), "/echo")
	if err == nil && (resp.StatusCode != 400 || strings.Contains(body, "203.0.113.99")) {
		t.Errorf("PROXY header from an untrusted peer: got %d %q, want 400 or a closed connection", resp.StatusCode, body)
	}
	if resp, body, err := rawRequest(untrusted, ppHeader(t, 2, "203.0.113.99:1"), "/echo"); err == nil && resp.StatusCode == 200 {
		t.Errorf("v2 header from an untrusted peer: got 200 %q, want it refused", body)
	}
	if resp, body, err := rawRequest(untrusted, nil, "/echo"); err != nil || body != "xff=127.0.0.1" {
		t.Errorf("plain request on the untrusted listener: got %v %q, %v; want xff=127.0.0.1", resp, body, err)
	}

	// Sent upstream: the origin reads the client's address from Verge's PROXY header.
	waitFor(t, "the health check's LOCAL header", 30*time.Second, func() bool {
		pp.mu.Lock()
		defer pp.mu.Unlock()
		return pp.local > 0
	})
	for _, src := range []string{"203.0.113.8:1111", "203.0.113.9:2222", "203.0.113.8:1111"} {
		resp, body, err := rawRequest(p.addr, ppHeader(t, 2, src), "/pp")
		want := "client=" + src + " xff=" + strings.Split(src, ":")[0]
		if err != nil || resp.StatusCode != 200 || body != want {
			t.Errorf("upstream PROXY header for %s: got %v %q, %v; want %q", src, resp, body, err, want)
		}
	}
	// Two requests on one client connection may share an upstream connection.
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(ppHeader(t, 1, "203.0.113.10:3333"))
	br := bufio.NewReader(c)
	for i := range 2 {
		fmt.Fprintf(c, "GET /pp HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "client=203.0.113.10:3333 xff=203.0.113.10"; string(b) != want {
			t.Errorf("keep-alive request %d: got %q, want %q", i, b, want)
		}
	}

	// The access log names the client of the header.
	waitFor(t, "the access log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(accessLog)
		return bytes.Contains(b, []byte(`"remote_addr":"203.0.113.7`)) && bytes.Contains(b, []byte(`"remote_addr":"203.0.113.9`))
	})
	if b, _ := os.ReadFile(accessLog); bytes.Contains(b, []byte("203.0.113.99")) {
		t.Errorf("the spoofed address of an untrusted peer reached the access log:\n%s", b)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func testOriginFunc(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestValidateProxyProtocolExample runs `verge validate` on the layer 4 examples.
func TestValidateProxyProtocolExample(t *testing.T) {
	for _, f := range []string{"proxy-protocol.yaml", "tcp-proxy.yaml", "udp-proxy.yaml"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"validate", "-c", filepath.Join("../../examples", f)}, &stdout, &stderr); code != 0 || stdout.String() != "ok\n" {
			t.Errorf("verge validate %s: code %d, stdout %q, stderr %q", f, code, stdout.String(), stderr.String())
		}
	}
}
