package router

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/upstream"
)

// startUDPL4 starts a runtime with one udp l4 listener in front of server and returns the
// listener's address and its udpServer.
func startUDPL4(t *testing.T, server net.PacketConn, maxConns int) (string, *udpServer) {
	t.Helper()
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	y := fmt.Sprintf(`l4: [{name: u, address: %q, protocol: udp, upstream: e, max_conns: %d}]
upstreams: [{name: e, servers: [{address: %q}]}]
access_log: {output: "off"}
admin: {disabled: true}
`, addr, maxConns, server.LocalAddr().String())
	tr := &upstream.Transport{}
	t.Cleanup(func() { tr.Close() })
	rt := NewRuntime(Options{Deps: Deps{Transport: tr, Store: lb.NewStateStore()}})
	if err := rt.Apply(mustConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	rt.mu.Lock()
	s := rt.l4.udp[addr]
	rt.mu.Unlock()
	return addr, s
}

// udpServerFunc serves datagrams on loopback with answer until the test ends.
func udpServerFunc(t *testing.T, answer func(pc net.PacketConn, p []byte, from net.Addr)) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			answer(pc, buf[:n], a)
		}
	}()
	return pc
}

func (s *udpServer) flow(client net.Conn) *udpFlow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flows[netip.MustParseAddrPort(client.LocalAddr().String())]
}

// poll waits for cond, failing after a generous deadline.
func poll(t *testing.T, what string, send func(), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if send != nil {
			send()
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// TestUDPFlowCapEvictsSilentFlows: with max_conns flows held by addresses that only send (as
// forged ones do), a new client still gets a flow, in place of a flow that never got a reply;
// a flow that got replies is kept over one that did not.
func TestUDPFlowCapEvictsSilentFlows(t *testing.T) {
	echo := udpServerFunc(t, func(pc net.PacketConn, p []byte, from net.Addr) {
		if bytes.HasPrefix(p, []byte("echo")) {
			pc.WriteTo(p, from)
		}
	})
	addr, s := startUDPL4(t, echo, 2)
	dial := func() net.Conn {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	silentA, silentB := dial(), dial()
	poll(t, "the silent flow A", func() { silentA.Write([]byte("x")) }, func() bool { return s.flow(silentA) != nil })
	poll(t, "the silent flow B", func() { silentB.Write([]byte("x")) }, func() bool { return s.flow(silentB) != nil })

	real := dial()
	buf := make([]byte, 64)
	served := false
	for range 50 { // UDP may lose a datagram
		real.Write([]byte("echo hello"))
		real.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := real.Read(buf); err == nil && string(buf[:n]) == "echo hello" {
			served = true
			break
		}
	}
	if !served {
		t.Fatal("a new client got no flow while silent flows held every place")
	}
	if s.flow(silentA) != nil && s.flow(silentB) != nil {
		t.Fatal("no silent flow was evicted")
	}
	// One silent flow and one answered flow now: a new silent client takes the silent one's
	// place, not the answered one's.
	silentC := dial()
	poll(t, "the silent flow C", func() { silentC.Write([]byte("x")) }, func() bool { return s.flow(silentC) != nil })
	if s.flow(real) == nil {
		t.Error("the answered flow was evicted while a silent one was there")
	}
}

// TestUDPReplyBoundStopsAmplification: a server that answers a 10-byte datagram with 40 KB (a
// reflector's dream) gets only the reply bound relayed to the (possibly forged) client.
func TestUDPReplyBoundStopsAmplification(t *testing.T) {
	const replies, size = 40, 1000
	amp := udpServerFunc(t, func(pc net.PacketConn, p []byte, from net.Addr) {
		big := make([]byte, size)
		for range replies {
			pc.WriteTo(big, from)
		}
	})
	addr, s := startUDPL4(t, amp, 10)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	poll(t, "the flow", func() { c.Write([]byte("0123456789")) }, func() bool { return s.flow(c) != nil })
	f := s.flow(c)
	sent := f.lc.in.Load()
	// Every reply is either relayed or dropped; wait until all the server sent for the
	// requests that reached it are accounted for.
	poll(t, "the replies", nil, func() bool {
		return f.lc.out.Load()/size+s.dropped.Load() >= replies*(f.lc.in.Load()/10)
	})
	if out, bound := f.lc.out.Load(), udpReplyFactor*f.lc.in.Load()+udpReplyAllowance; out > bound {
		t.Fatalf("relayed %d bytes to a client that sent %d (first %d): more than the bound %d", out, f.lc.in.Load(), sent, bound)
	}
	if s.dropped.Load() == 0 {
		t.Fatal("no reply dropped")
	}
}
