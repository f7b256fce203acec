package router

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/server"
)

// countingListener counts the connections taken from the kernel.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (c *countingListener) Accept() (net.Conn, error) {
	conn, err := c.Listener.Accept()
	if err == nil {
		c.n.Add(1)
	}
	return conn, err
}

// waitFor polls cond until it holds, failing the test after a generous deadline or as soon
// as bad reports something.
func waitFor(t *testing.T, what string, cond func() bool, bad func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if msg := bad(); msg != "" {
			t.Fatal(msg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if msg := bad(); msg != "" {
		t.Fatal(msg)
	}
}

// When nobody calls Accept (the server is at max_conns), the PROXY reader must stop taking
// connections from the kernel once it holds its maximum, instead of reading their headers
// and parking them without bound (file descriptors and goroutines past max_conns).
func TestProxyListenerStopsAcceptingWhenServerDoes(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: inner}
	const max, n = 4, 12
	cfg := &config.ProxyProtocol{Trusted: config.StringList{"127.0.0.1/32"}, Timeout: config.Duration(time.Minute)}
	p := newProxyListenerSize(cl, cfg, nil, slog.New(slog.DiscardHandler), max)
	defer p.Close()
	for range n {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// max held, plus the one run took and waits to find a place for.
	limit := int32(max + 1)
	tooMany := func() string {
		if got := cl.n.Load(); got > limit {
			return fmt.Sprintf("the PROXY reader took %d connections from the kernel with nobody accepting, more than %d", got, limit)
		}
		return ""
	}
	waitFor(t, "the reader to hold its maximum", func() bool { return len(p.sem) == max && cl.n.Load() == limit }, tooMany)
	c, err := p.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "1.2.3.4:1111" {
		t.Errorf("RemoteAddr %s, want the header's", got)
	}
	limit++ // one accepted: exactly one more may be taken
	waitFor(t, "the reader to take one more", func() bool { return len(p.sem) == max && cl.n.Load() == limit }, tooMany)
}

// A connection whose header is read but that the server does not take within the timeout is
// closed and counted as shed for max_conns.
func TestProxyListenerClosesUnacceptedAfterTimeout(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var shed atomic.Int32
	cfg := &config.ProxyProtocol{Trusted: config.StringList{"127.0.0.1/32"}, Timeout: config.Duration(200 * time.Millisecond)}
	p := newProxyListener(inner, cfg, func(reason string) {
		if reason == server.ShedMaxConns {
			shed.Add(1)
		}
	}, slog.New(slog.DiscardHandler))
	defer p.Close()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // failure bound only
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %v, want the connection closed by the listener", err)
	}
	waitFor(t, "the shed count", func() bool { return shed.Load() == 1 }, func() string { return "" })
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A connection behind a PROXY header that the server sheds is reset like a plain one: the
// shed finds the socket's linger through the wrapper.
func TestProxiedConnShedResets(t *testing.T) {
	cli, srv := tcpPair(t)
	pc := &proxiedConn{Conn: srv, remote: srv.RemoteAddr(), local: srv.LocalAddr()}
	lc, ok := net.Conn(pc).(interface{ SetLinger(sec int) error })
	if !ok {
		t.Fatal("proxiedConn has no SetLinger: shed cannot reset it")
	}
	if err := lc.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	cli.SetReadDeadline(time.Now().Add(20 * time.Second)) // failure bound only
	_, err := cli.Read(make([]byte, 1))
	if err == nil || isTimeout(err) || errors.Is(err, io.EOF) {
		t.Fatalf("read %v, want a reset", err)
	}
}
