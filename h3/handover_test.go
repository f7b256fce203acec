package h3

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/verge-edge/verge/message"
)

// countingConn counts the datagrams a client sends once counting is on.
type countingConn struct {
	*net.UDPConn
	on   atomic.Bool
	sent atomic.Int64
}

func (c *countingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.on.Load() {
		c.sent.Add(1)
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *countingConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	if c.on.Load() {
		c.sent.Add(1)
	}
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

// named answers every request with name, so a test sees which process served it.
func named(name string) func(message.ServerExchange) {
	return func(ex message.ServerExchange) { respond(ex, 200, nil, []byte(name)) }
}

// TestUpgradeHandover runs an upgrade the way cmd/verge does: the old server's process
// generation prepares the hand-over channel, the new one inherits a copy of the UDP socket
// and the channel, the old one stops accepting and hands over. Requests on the connection
// the old server accepted keep succeeding, and every datagram its client sends after the
// hand-over reaches the old server through the new one (none lost); new connections land on
// the new server; the old server then drains and closes.
func TestUpgradeHandover(t *testing.T) {
	cert, pool := testCertificate(t)
	tlsConf := func() *tls.Config { return &tls.Config{Certificates: []tls.Certificate{cert}} }

	oldGen := NewGeneration(nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	oldSock := oldGen.NewSocket(pc)
	// No path MTU probes on either side: the client sends only what the requests need, so
	// its datagrams can be counted against the forwarded ones.
	oldSrv := &Server{Handler: named("old"), TLSConfig: tlsConf(), DisablePathMTUDiscovery: true}
	oldServed := make(chan struct{})
	go func() { defer close(oldServed); oldSrv.Serve(oldSock) }()
	t.Cleanup(func() { oldSrv.Close(); oldSock.Close(); <-oldServed })

	// The client of the old server, on its own counted socket.
	cpc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{UDPConn: cpc}
	ctr := &quic.Transport{Conn: cc}
	t.Cleanup(func() { ctr.Close(); cpc.Close() })
	oldTr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		QUICConfig:      &quic.Config{MaxIdleTimeout: 10 * time.Second, DisablePathMTUDiscovery: true},
		Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return ctr.DialEarly(ctx, ua, tc, qc)
		},
	}
	t.Cleanup(func() { oldTr.Close() })
	oldClient := &http.Client{Transport: oldTr, Timeout: 10 * time.Second}
	get := func(c *http.Client) string {
		t.Helper()
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		return string(readAll(t, resp.Body))
	}
	if got := get(oldClient); got != "old" {
		t.Fatalf("before the upgrade: served by %q, want old", got)
	}

	// The upgrade: the new process gets copies of the UDP socket and of the channel. From the
	// moment it reads the socket it forwards the old connection's datagrams, so counting
	// starts here, once the client is quiet.
	time.Sleep(100 * time.Millisecond)
	cc.on.Store(true)
	ho, err := oldGen.PrepareHandover()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ho.Close() })
	uf, err := pc.(*net.UDPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	pc2, err := net.FilePacketConn(uf)
	uf.Close()
	if err != nil {
		t.Fatal(err)
	}
	parentTag := oldGen.Tag()
	newGen := NewGeneration(&parentTag)
	if err := newGen.Inherit(dupFile(t, ho.File())); err != nil {
		t.Fatal(err)
	}
	newSock := newGen.NewSocket(pc2)
	newSrv := &Server{Handler: named("new"), TLSConfig: tlsConf()}
	newServed := make(chan struct{})
	go func() { defer close(newServed); newSrv.Serve(newSock) }()
	t.Cleanup(func() { newSrv.Close(); newSock.Close(); <-newServed })

	oldSrv.StopAccepting()
	ho.Start()

	const requests = 300
	start := time.Now()
	for i := range requests {
		if got := get(oldClient); got != "old" {
			t.Fatalf("request %d on the old connection: served by %q, want old", i, got)
		}
	}
	elapsed := time.Since(start)

	newClient, _ := newClient(t)
	for range 3 {
		if got := get(newClient); got != "new" {
			t.Fatalf("new connection served by %q, want new", got)
		}
	}
	if n := oldSrv.ActiveConns(); n != 1 {
		t.Fatalf("old server has %d connections, want 1", n)
	}

	// Every datagram the old server's client sent after the hand-over was forwarded.
	deadline := time.Now().Add(20 * time.Second) // a failure guard for a busy machine
	for {
		fwd, dropped := newGen.Forwarded()
		sent := uint64(cc.sent.Load())
		if dropped != 0 {
			t.Fatalf("%d datagrams dropped on the hand-over channel", dropped)
		}
		if fwd == sent && sent >= requests {
			t.Logf("%d requests in %v on the old connection; %d datagrams forwarded", requests, elapsed, fwd)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client sent %d datagrams after the hand-over, %d forwarded to the old server", sent, fwd)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The old server drains: the client closes its connection, the old server sees it
	// (through the channel) and Shutdown returns.
	oldTr.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	if err := oldSrv.Shutdown(ctx); err != nil {
		t.Fatalf("old server drain: %v", err)
	}
	if n := oldSrv.ActiveConns(); n != 0 {
		t.Fatalf("old server still has %d connections", n)
	}
	oldSock.Close()
	ho.Close()
	<-oldServed

	// The new server goes on alone; forwarding has stopped or stops at the next
	// datagram for the old tag.
	if got := get(newClient); got != "new" {
		t.Fatalf("after the old server left: served by %q, want new", got)
	}
}
