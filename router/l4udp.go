package router

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/observe"
)

// maxDatagram is the largest datagram relayed (the largest a UDP/IPv4 payload can be); a
// flow holds one buffer of this size while it waits for its server.
const maxDatagram = 65535

// udpServer relays the datagrams of one udp l4 listener: each client address is a flow with
// a connected socket of its own to the server chosen for it; a flow ends after its idle
// timeout. At most max_conns flows exist at once: a new client beyond that takes the place of
// the least recently active flow that never got a reply, or else of the least recently
// active flow, so addresses that only send (forged ones) cannot keep every place.
type udpServer struct {
	rt  *Runtime
	pc  net.PacketConn
	cur atomic.Pointer[l4Settings]

	mu      sync.Mutex
	flows   map[netip.AddrPort]*udpFlow
	dropped atomic.Int64 // datagrams dropped: no flow and no place for one, no server, reply bound
	done    chan struct{}
	wg      sync.WaitGroup
}

// Reply bound: a flow forwards to its client at most udpReplyFactor times the bytes the
// client sent plus udpReplyAllowance, so a forged source address cannot make Verge send a
// victim much more than the forger sent (beyond one ordinary answer). Replies past the bound
// are dropped.
const (
	udpReplyFactor    = 3
	udpReplyAllowance = 4096
)

// udpFlow is one client address's association with a server.
type udpFlow struct {
	srv    *udpServer
	client netip.AddrPort
	up     *net.UDPConn
	b      *lb.Backend
	lc     l4Conn
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
}

// applyUDP starts, updates and stops the udp l4 listeners. With rt.mu held.
func (rt *Runtime) applyUDP(cfg *config.Config, settings map[string]*l4Settings) {
	if rt.l4.packets == nil {
		rt.l4.packets = map[string]net.PacketConn{}
	}
	for a, pc := range rt.l4.pending {
		rt.l4.packets[a] = pc
	}
	rt.l4.pending = nil
	next := map[string]*udpServer{} // by address: one server reads a socket
	inUse := map[string]bool{}
	for i := range cfg.L4 {
		l := &cfg.L4[i]
		if l.Protocol != "udp" {
			continue
		}
		inUse[l.Address] = true
		if old := rt.l4.udp[l.Address]; old != nil {
			old.cur.Store(settings[l.Name])
			next[l.Address] = old
			continue
		}
		s := &udpServer{rt: rt, pc: rt.l4.packets[l.Address], flows: map[netip.AddrPort]*udpFlow{},
			done: make(chan struct{})}
		s.cur.Store(settings[l.Name])
		rt.log.Info("l4 listener started", "listener", l.Name, "protocol", "udp", "addr", s.pc.LocalAddr().String())
		go s.serve()
		next[l.Address] = s
	}
	rt.l4.udp = next
	for a, pc := range rt.l4.packets {
		if !inUse[a] {
			pc.Close() // ends its server's read loop and, with it, its flows
			delete(rt.l4.packets, a)
		}
	}
}

// closeUDP closes every udp socket; the servers and their flows end. With rt.mu held.
func (rt *Runtime) closeUDP() {
	for a, pc := range rt.l4.packets {
		pc.Close()
		delete(rt.l4.packets, a)
	}
	for _, s := range rt.l4.udp {
		<-s.done
	}
	rt.l4.udp = nil
}

// serve reads client datagrams until the socket is closed, then ends every flow.
func (s *udpServer) serve() {
	defer close(s.done)
	buf := make([]byte, maxDatagram)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue // e.g. an ICMP error reported on the socket
		}
		s.relay(addrPortOf(addr), buf[:n])
	}
	s.mu.Lock()
	for _, f := range s.flows {
		f.up.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// relay sends one client datagram to its flow's server, starting the flow if needed.
func (s *udpServer) relay(client netip.AddrPort, p []byte) {
	s.mu.Lock()
	f := s.flows[client]
	s.mu.Unlock()
	if f == nil {
		if f = s.newFlow(client); f == nil {
			s.drop()
			return
		}
	}
	f.last.Store(time.Now().UnixNano())
	if _, err := f.up.Write(p); err == nil {
		f.lc.in.Add(int64(len(p)))
	}
}

// drop counts a datagram not relayed.
func (s *udpServer) drop() {
	s.dropped.Add(1)
	if in := s.rt.cur.Load(); in != nil {
		if m, ok := in.metric.(L4Metrics); ok {
			m.L4Dropped(s.cur.Load().cfg.Name)
		}
	}
}

// newFlow starts the flow of a new client, or returns nil when the flow cap is reached or
// no server is available.
func (s *udpServer) newFlow(client netip.AddrPort) *udpFlow {
	st := s.cur.Load()
	s.mu.Lock()
	if len(s.flows) >= st.cfg.MaxConns {
		s.evictLocked()
	}
	full := len(s.flows) >= st.cfg.MaxConns
	s.mu.Unlock()
	if full {
		return nil
	}
	g := s.rt.cur.Load().groups[st.cfg.Upstream]
	if g == nil {
		return nil
	}
	a := client.Addr().As16()
	b := g.bal.Select(a[:])
	if b == nil {
		return nil
	}
	raddr, err := net.ResolveUDPAddr("udp", b.Address)
	var up *net.UDPConn
	if err == nil {
		up, err = net.DialUDP("udp", nil, raddr)
	}
	if err != nil {
		g.bal.Report(b, err)
		return nil
	}
	f := &udpFlow{srv: s, client: client, up: up, b: b}
	f.lc = l4Conn{start: time.Now(), client: client, group: st.cfg.Upstream, upstream: b.Address, attempts: 1}
	f.last.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.flows[client] = f
	s.mu.Unlock()
	s.wg.Add(1)
	go f.replies(st.cfg.IdleTimeout.Std())
	return f
}

// evictLocked ends the least recently active flow that never got a reply, or, when every
// flow got one, the least recently active flow. With s.mu held.
func (s *udpServer) evictLocked() {
	var victim *udpFlow
	var vAnswered bool
	var vLast int64
	for _, f := range s.flows {
		answered, last := f.lc.out.Load() > 0, f.last.Load()
		if victim == nil || (!answered && vAnswered) || (answered == vAnswered && last < vLast) {
			victim, vAnswered, vLast = f, answered, last
		}
	}
	if victim != nil {
		delete(s.flows, victim.client)
		victim.up.Close() // its replies loop ends and logs it
	}
}

// replies relays the server's datagrams to the client until the flow is idle for idle or
// its socket is closed, then ends the flow.
func (f *udpFlow) replies(idle time.Duration) {
	s := f.srv
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	dst := net.UDPAddrFromAddrPort(f.client)
	var err error
	for {
		f.up.SetReadDeadline(time.Unix(0, f.last.Load()).Add(idle))
		var n int
		n, err = f.up.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, f.last.Load())) < idle {
				continue
			}
			break
		}
		f.last.Store(time.Now().UnixNano())
		if f.lc.out.Load()+int64(n) > udpReplyFactor*f.lc.in.Load()+udpReplyAllowance {
			s.drop() // the server sends far more than the client asked for: not relayed
			continue
		}
		if _, werr := s.pc.WriteTo(buf[:n], dst); werr == nil {
			f.lc.out.Add(int64(n))
		}
	}
	s.mu.Lock()
	if s.flows[f.client] == f {
		delete(s.flows, f.client)
	}
	s.mu.Unlock()
	f.up.Close()
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		err = nil // idle, or the listener stopped: the normal ends of a flow
	} else if err != nil {
		err = fmt.Errorf("server: %w", err) // e.g. connection refused (ICMP port unreachable)
	}
	f.b.Done(err == nil)
	f.lc.err = err
	s.logFlow(f)
}

func (s *udpServer) logFlow(f *udpFlow) {
	in := s.rt.cur.Load()
	if in == nil {
		return
	}
	observeL4(in, s.cur.Load().cfg.Name, "udp", &f.lc)
	if in.access == nil {
		return
	}
	rec := observe.Record{
		Time:          f.lc.start,
		RemoteAddr:    f.client,
		Proto:         "UDP",
		BytesReceived: f.lc.in.Load(),
		BytesSent:     f.lc.out.Load(),
		Duration:      time.Since(f.lc.start),
		UpstreamAddr:  f.lc.upstream,
		Route:         s.cur.Load().cfg.Name,
		Attempts:      1,
		Error:         f.lc.err,
	}
	in.access.Log(&rec)
}
