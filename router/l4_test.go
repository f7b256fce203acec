package router

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

func TestSNITable(t *testing.T) {
	tab := newSNITable([]config.SNIRoute{
		{ServerNames: config.StringList{"a.example.com"}, Upstream: "a"},
		{ServerNames: config.StringList{"*.example.com"}, Upstream: "wild"},
	})
	for _, tc := range []struct{ name, want string }{
		{"a.example.com", "a"}, {"A.Example.COM.", "a"}, {"b.example.com", "wild"},
		{"x.b.example.com", "def"}, {"example.com", "def"}, {"", "def"},
	} {
		if got := tab.group(tc.name, "def"); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPeekServerName(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(b, &tls.Config{ServerName: "x.test", InsecureSkipVerify: true}).Handshake()
	name, hello, err := peekServerName(a, 5*time.Second)
	if err != nil || name != "x.test" {
		t.Fatalf("got %q, %v", name, err)
	}
	if len(hello) < 5 || hello[0] != 0x16 {
		t.Errorf("bytes read: % x", hello[:min(len(hello), 8)])
	}

	// Not TLS.
	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	go io.WriteString(d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, _, err := peekServerName(c, 5*time.Second); err == nil {
		t.Error("plain HTTP: got no error")
	}
	// Silent: the timeout ends the wait.
	e, f := net.Pipe()
	defer e.Close()
	defer f.Close()
	if _, _, err := peekServerName(e, 50*time.Millisecond); err == nil {
		t.Error("silent client: got no error")
	}
	// A record stream longer than the bound is refused, whatever it claims.
	g, h := net.Pipe()
	defer g.Close()
	defer h.Close()
	go func() {
		// ClientHello handshake message announcing 16 MiB, in full-size records.
		rec := make([]byte, 5+16384)
		rec[0], rec[1], rec[2], rec[3], rec[4] = 0x16, 3, 1, 0x40, 0
		rec[5], rec[6], rec[7], rec[8] = 1, 0xff, 0xff, 0xff
		for range 8 {
			if _, err := h.Write(rec); err != nil {
				return
			}
			rec[5], rec[6], rec[7], rec[8] = 0, 0, 0, 0
		}
	}()
	if _, _, err := peekServerName(g, 5*time.Second); err == nil {
		t.Error("oversized hello: got no error")
	}
}

// BenchmarkL4Pipe measures the copy loop of a TCP l4 connection: loopback sockets on both
// sides, 1 MiB per operation client to server (spliced on Linux).
func BenchmarkL4Pipe(b *testing.B) {
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		return c, s
	}
	client, proxyIn := pair()
	proxyOut, server := pair()
	defer client.Close()
	defer server.Close()
	done := make(chan struct{})
	go func() {
		pipe(proxyIn, proxyOut, time.Minute, &l4Conn{})
		close(done)
	}()
	const size = 1 << 20
	msg := make([]byte, size)
	buf := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		go client.Write(msg)
		for got := 0; got < size; {
			n, err := server.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	client.Close()
	server.Close()
	<-done
}

// TestL4TCPReload: a tcp l4 listener relays to its group, half-closes, and keeps a
// connection going across a reload that sends new connections elsewhere.
func TestL4TCPReload(t *testing.T) {
	serve := func(h func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); h(c) }()
			}
		}()
		return ln.Addr().String()
	}
	echo := serve(func(c net.Conn) { io.Copy(c, c); c.(*net.TCPConn).CloseWrite() })
	hello := serve(func(c net.Conn) { io.WriteString(c, "hello") })
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	conf := func(group string) *config.Config {
		return mustConfig(t, fmt.Sprintf(`l4: [{name: t, address: %q, upstream: %s}]
upstreams: [{name: echo, servers: [{address: %q}]}, {name: hello, servers: [{address: %q}]}]
access_log: {output: "off"}
admin: {disabled: true}
`, addr, group, echo, hello))
	}
	tr := &upstream.Transport{}
	defer tr.Close()
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore()}})
	if err := rt.Apply(conf("echo")); err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.SetDeadline(time.Now().Add(30 * time.Second)) // a failure guard
	io.WriteString(held, "one")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "one" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if err := rt.Apply(conf("hello")); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if b, _ := io.ReadAll(c); string(b) != "hello" {
		t.Errorf("after the reload: got %q, want hello", b)
	}
	c.Close()
	io.WriteString(held, "two")
	held.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(held); string(b) != "two" {
		t.Errorf("the connection across the reload: got %q, want two", b)
	}
}
