package router

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A client that half-closes and then never reads, with a server that keeps writing: the
// write towards the client makes no headway, and the connection must end as idle instead of
// holding its max_conns slot forever.
func TestL4PipeStuckWriteAfterHalfCloseIsIdle(t *testing.T) {
	cli, proxyCli := tcpPair(t) // cli: the client; proxyCli: Verge's side
	proxyUp, srv := tcpPair(t)  // proxyUp: Verge's side; srv: the server
	cli.(*net.TCPConn).SetReadBuffer(4096)
	cli.(*net.TCPConn).CloseWrite() // request sent; the client never reads
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := srv.Write(buf); err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- pipe(proxyCli, proxyUp, 500*time.Millisecond, &l4Conn{}) }()
	select {
	case err := <-done:
		if err == nil || err.Error() != "idle timeout" {
			t.Fatalf("pipe ended with %v, want idle timeout", err)
		}
	case <-time.After(30 * time.Second):
		proxyCli.Close()
		proxyUp.Close()
		<-done
		t.Fatal("pipe still running long after its idle timeout, stuck writing to a client that does not read")
	}
}

// A slow one-way transfer (server to a silent client) that never pauses for the idle time
// must not be closed as idle, even though no splice chunk completes while it runs.
func TestL4PipeSlowOneWayTransferIsNotIdle(t *testing.T) {
	cli, proxyCli := tcpPair(t)
	proxyUp, srv := tcpPair(t)
	const rounds, size = 40, 16 << 10 // far below one 4MiB chunk, spread over 4 idle times
	go func() {
		buf := make([]byte, size)
		tick := time.NewTicker(50 * time.Millisecond) // pacing of the traffic, not a wait
		defer tick.Stop()
		for range rounds {
			<-tick.C
			if _, err := srv.Write(buf); err != nil {
				return
			}
		}
		srv.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- pipe(proxyCli, proxyUp, 500*time.Millisecond, &l4Conn{}) }()
	got, err := io.Copy(io.Discard, cli)
	if err != nil {
		t.Fatalf("client read after %d bytes: %v", got, err)
	}
	if got != rounds*size {
		t.Fatalf("client got %d bytes of %d: the busy connection was closed as idle (pipe: %v)", got, rounds*size, <-done)
	}
	cli.Close()
	if err := <-done; err != nil {
		t.Fatalf("pipe: %v", err)
	}
}

// Both directions silent: the connection ends as idle.
func TestL4PipeSilentConnectionIsIdle(t *testing.T) {
	_, proxyCli := tcpPair(t)
	proxyUp, _ := tcpPair(t)
	if err := pipe(proxyCli, proxyUp, 200*time.Millisecond, &l4Conn{}); err == nil || err.Error() != "idle timeout" {
		t.Fatalf("pipe ended with %v, want idle timeout", err)
	}
}
