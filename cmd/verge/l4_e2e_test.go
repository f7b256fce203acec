package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verge-edge/verge/internal/proxyproto"
)

// tcpServer accepts on a loopback port and runs handle per connection until the test ends.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

// echo copies what it reads back, and half-closes after the client did.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
}

func tlsServer(t *testing.T, answer string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair("../../examples/certs/localhost.pem", "../../examples/certs/localhost-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return tcpServer(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		io.WriteString(tc, answer+" "+tc.ConnectionState().ServerName)
		tc.Close()
	})
}

// TestRunL4 runs `verge run` with tcp listeners: a plain proxy in front of a Go echo server
// (a long stream both ways, checksums compared), SNI routing without terminating TLS, TLS
// termination, the PROXY header sent to a server that checks it, a dead server ejected by
// health checks, and a reload that changes a listener's group while a connection keeps going.
func TestRunL4(t *testing.T) {
	echoAddr := tcpServer(t, echo)
	hello := tcpServer(t, func(c net.Conn) { io.WriteString(c, "hello from b\n") })
	ppCheck := tcpServer(t, func(c net.Conn) {
		h, _, err := proxyproto.Read(c, 5*time.Second)
		if err != nil {
			fmt.Fprintf(c, "error %v\n", err)
			return
		}
		fmt.Fprintf(c, "client %s\n", h.Src)
	})
	tlsA, tlsB := tlsServer(t, "A"), tlsServer(t, "B")
	udpEcho := udpEchoServer(t)
	udpAddr := freeUDPPort(t)
	dead := freePort(t) // nothing listens there
	plain, sni, term, pp, ppIn := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	adminAddr := freePort(t)
	certs, _ := filepath.Abs("../../examples/certs")
	accessLog := filepath.Join(t.TempDir(), "access.log")
	config := func(plainGroup string) func(p *proc) {
		return func(p *proc) {
			y := fmt.Sprintf(`listeners: [{name: web, address: %q}]
routes: [{name: r, respond: {body: ok}}]
l4:
  - {name: plain, address: %q, upstream: %s, idle_timeout: 30s}
  - name: sni
    address: %q
    sni_routes:
      - {server_names: [a.test], upstream: tls-a}
      - {server_names: ["*.b.test"], upstream: tls-b}
  - name: term
    address: %q
    upstream: echo
    tls: {certificates: [{cert: %s/localhost.pem, key: %s/localhost-key.pem}]}
  - {name: pp, address: %q, upstream: ppcheck}
  - {name: dns, address: %q, protocol: udp, upstream: udpecho, idle_timeout: 2s}
  - {name: ppin, address: %q, upstream: ppcheck, proxy_protocol: {trusted: [127.0.0.1]}}
upstreams:
  - name: echo
    servers: [{address: %q}, {address: %q}]
    health_check: {type: tcp, interval: 300ms, timeout: 250ms, fall: 1}
  - {name: hello, servers: [{address: %q}]}
  - {name: tls-a, servers: [{address: %q}]}
  - {name: tls-b, servers: [{address: %q}]}
  - {name: ppcheck, servers: [{address: %q}], send_proxy_protocol: v1}
  - {name: udpecho, servers: [{address: %q}]}
admin: {address: %q}
access_log: {output: %q, format: json}
pid_file: %q
`, p.addr, plain, plainGroup, sni, term, certs, certs, pp, udpAddr, ppIn, echoAddr, dead, hello, tlsA, tlsB, ppCheck, udpEcho, adminAddr, accessLog, p.pidFile)
			os.WriteFile(p.cfgFile, []byte(y), 0o644)
		}
	}
	p := launchVerge(t, config("echo"))
	waitFor(t, "verge run to serve", 60*time.Second, func() bool {
		c, err := net.Dial("tcp", plain)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// The dead server is taken down by the TCP health check.
	waitFor(t, "the dead server to be marked down", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/upstreams")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st []struct {
			Group, Address string
			Healthy        bool
		}
		json.NewDecoder(resp.Body).Decode(&st)
		for _, s := range st {
			if s.Address == dead {
				return !s.Healthy
			}
		}
		return false
	})

	// A long stream both ways through the plain proxy.
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	held := streamEcho(t, plain, size)

	// SNI routing without terminating TLS: the servers' own certificates and names.
	for _, tc := range []struct{ name, want string }{{"a.test", "A a.test"}, {"x.b.test", "B x.b.test"}} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sni, &tls.Config{ServerName: tc.name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("sni %s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != tc.want {
			t.Errorf("sni %s: got %q, want %q", tc.name, b, tc.want)
		}
	}
	// A name no route lists, with no default group: closed.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sni, &tls.Config{ServerName: "c.test", InsecureSkipVerify: true}); err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n > 0 {
			t.Error("unrouted server name: got bytes")
		}
		c.Close()
	}

	// TLS termination in front of the echo server.
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", term, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(tc, "over tls")
	tc.CloseWrite()
	if b, _ := io.ReadAll(tc); string(b) != "over tls" {
		t.Errorf("tls termination: got %q", b)
	}
	tc.Close()

	// The PROXY header reaches a TCP server.
	c, err := net.Dial("tcp", pp)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if want := "client " + c.LocalAddr().String() + "\n"; string(b) != want {
		t.Errorf("PROXY header to a tcp server: got %q, want %q", b, want)
	}
	c.Close()

	// A PROXY header accepted from a trusted balancer names the client sent on.
	c, err = net.Dial("tcp", ppIn)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hdr, _ := proxyproto.Format(2, netip.MustParseAddrPort("203.0.113.50:4444"), netip.MustParseAddrPort("198.51.100.1:6379"))
	c.Write(hdr)
	b, _ = io.ReadAll(c)
	if want := "client 203.0.113.50:4444\n"; string(b) != want {
		t.Errorf("PROXY header in and out: got %q, want %q", b, want)
	}
	c.Close()

	// UDP: datagrams relayed both ways, from two clients (two flows).
	for i := range 2 {
		uc, err := net.Dial("udp", udpAddr)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2048)
		ok := false
		for try := 0; try < 50 && !ok; try++ { // UDP may lose a datagram: send again
			msg := fmt.Sprintf("datagram %d.%d", i, try)
			uc.Write([]byte(msg))
			uc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := uc.Read(got)
			ok = err == nil && string(got[:n]) == msg
		}
		if !ok {
			t.Errorf("udp client %d: no echo", i)
		}
		uc.Close()
	}

	// A reload sends new connections of "plain" to another group; the connection opened
	// before goes on with the echo server.
	config("hello")(p)
	syscallHUP(t, p)
	waitFor(t, "the reload", 30*time.Second, func() bool {
		c, err := net.Dial("tcp", plain)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b) == "hello from b\n"
	})
	held.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(held, "still here")
	held.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(held); string(b) != "still here" {
		t.Errorf("a connection across the reload: got %q", b)
	}
	held.Close()

	// One access log line per connection, with bytes, upstream and duration.
	waitFor(t, "the access log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(accessLog)
		return bytes.Contains(b, []byte(fmt.Sprintf(`"bytes_received":%d`, size))) && bytes.Contains(b, []byte(`"route":"sni"`)) &&
			bytes.Contains(b, []byte(`"proto":"UDP"`))
	})
	// Metrics: bytes and connections per listener.
	waitFor(t, "the l4 metrics", 10*time.Second, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		m, _ := io.ReadAll(resp.Body)
		return bytes.Contains(m, []byte(`verge_l4_connections_total{listener="dns",proto="udp",result="ok"}`)) &&
			bytes.Contains(m, []byte(`verge_l4_bytes_total{direction="in",listener="plain"}`)) &&
			bytes.Contains(m, []byte(`verge_l4_connections_total{listener="term",proto="tcp",result="ok"} 1`))
	})
	b, _ = os.ReadFile(accessLog)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, fmt.Sprintf(`"bytes_received":%d`, size)) {
			if !strings.Contains(line, fmt.Sprintf(`"bytes_sent":%d`, size)) || !strings.Contains(line, `"upstream_addr":"`+echoAddr+`"`) || !strings.Contains(line, `"proto":"TCP"`) {
				t.Errorf("access log line of the stream: %s", line)
			}
		}
	}
}

// streamEcho sends size pseudo-random bytes through addr to an echo server while reading
// them back, compares checksums, and returns a second connection to addr, opened and checked
// before, for later use.
func streamEcho(t *testing.T, addr string, size int64) net.Conn {
	t.Helper()
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(held, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the proxy: %q, %v", buf, err)
	}
	held.SetDeadline(time.Time{})

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute)) // a failure guard
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		r := rand.NewChaCha8([32]byte{1})
		buf := make([]byte, 256<<10)
		for left := size; left > 0; {
			n := int(min(int64(len(buf)), left))
			r.Read(buf[:n])
			sent.Write(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				errc <- err
				return
			}
			left -= int64(n)
		}
		errc <- c.(*net.TCPConn).CloseWrite()
	}()
	got := sha256.New()
	n, err := io.Copy(got, c)
	if werr := <-errc; werr != nil {
		t.Fatalf("writing the stream: %v", werr)
	}
	if err != nil || n != size {
		t.Fatalf("read back %d of %d bytes: %v", n, size, err)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		t.Fatal("the stream came back different")
	}
	return held
}

func udpEchoServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], addr)
		}
	}()
	return pc.LocalAddr().String()
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

func syscallHUP(t *testing.T, p *proc) {
	t.Helper()
	if out, err := exec.Command(verge(t), "reload", "-c", p.cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("verge reload: %v\n%s", err, out)
	}
}
