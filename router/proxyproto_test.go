package router

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/config"
)

func newTestProxyListener(t *testing.T, trusted string, timeout time.Duration) (*proxyListener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int32
	p := newProxyListener(ln, &config.ProxyProtocol{Trusted: config.StringList{trusted}, Timeout: config.Duration(timeout)},
		func(reason string) {
			if reason == ShedProxyProtocol {
				shed.Add(1)
			}
		}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { p.Close() })
	return p, &shed
}

// TestProxyListenerSlowPeerDoesNotBlock: a trusted peer that sends no header holds neither
// the accept loop nor other connections, and is closed after the timeout.
func TestProxyListenerSlowPeerDoesNotBlock(t *testing.T) {
	p, shed := newTestProxyListener(t, "127.0.0.1", 300*time.Millisecond)
	slow, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("PROXY TCP4 ")) // and nothing more
	fast, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	fast.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nhello"))
	c, err := p.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "192.0.2.1:1234" {
		t.Errorf("RemoteAddr: got %s, want 192.0.2.1:1234", got)
	}
	if got := c.LocalAddr().String(); got != "192.0.2.2:80" {
		t.Errorf("LocalAddr: got %s, want 192.0.2.2:80", got)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("bytes after the header: got %q, %v", buf, err)
	}
	// The slow one is closed by the timeout (read returns EOF or a reset).
	slow.SetReadDeadline(time.Now().Add(30 * time.Second)) // a failure guard
	if _, err := slow.Read(make([]byte, 1)); err == nil {
		t.Error("the slow peer's connection is still open")
	}
	waitShed(t, shed, 1)
}

func waitShed(t *testing.T, shed *atomic.Int32, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for shed.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("shed hook called %d times, want %d", shed.Load(), n)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestProxyListenerUntrustedPassesThrough: a peer outside trusted is not read: its bytes,
// a PROXY header included, reach the server as they are, and its address stands.
func TestProxyListenerUntrustedPassesThrough(t *testing.T) {
	p, _ := newTestProxyListener(t, "192.0.2.0/24", time.Second)
	cl, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const spoof = "PROXY TCP4 203.0.113.1 192.0.2.2 1234 80\r\n"
	cl.Write([]byte(spoof))
	c, err := p.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != cl.LocalAddr().String() {
		t.Errorf("RemoteAddr: got %s, want the peer %s", got, cl.LocalAddr())
	}
	buf := make([]byte, len(spoof))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != spoof {
		t.Errorf("got %q, %v", buf, err)
	}
}

// TestProxyListenerGarbageRefused: a trusted peer whose first bytes are no header is closed.
func TestProxyListenerGarbageRefused(t *testing.T) {
	p, shed := newTestProxyListener(t, "127.0.0.1", 5*time.Second)
	for _, s := range []string{"GET / HTTP/1.1\r\n\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x01x"} {
		cl, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cl.Write([]byte(s))
		cl.SetReadDeadline(time.Now().Add(30 * time.Second)) // a failure guard
		if _, err := cl.Read(make([]byte, 1)); err == nil {
			t.Errorf("%q: connection still open", s)
		}
		cl.Close()
	}
	waitShed(t, shed, 3)
}

// TestProxiedConnSyscallConn: the socket is handed to the HTTP/1 idle wait only once the
// bytes read past the header are consumed.
func TestProxiedConnSyscallConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	pc := &proxiedConn{Conn: a, prefix: []byte("x")}
	if _, err := pc.SyscallConn(); err == nil {
		t.Error("SyscallConn with bytes pending: got no error")
	}
	buf := make([]byte, 4)
	if n, _ := pc.Read(buf); n != 1 {
		t.Fatalf("read %d bytes", n)
	}
	// net.Pipe has no socket (ErrUnsupported); what matters is that the prefix is done.
	if _, err := pc.SyscallConn(); err == errPrefixPending {
		t.Error("SyscallConn after the bytes were read: still pending")
	}
}

func BenchmarkProxyListenerAccept(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := newProxyListener(ln, &config.ProxyProtocol{Trusted: config.StringList{"127.0.0.1"}, Timeout: config.Duration(5 * time.Second)}, nil, slog.New(slog.DiscardHandler))
	defer p.Close()
	hdr := []byte("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n")
	b.ReportAllocs()
	for b.Loop() {
		cl, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		cl.Write(hdr)
		c, err := p.Accept()
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
		cl.Close()
	}
}
