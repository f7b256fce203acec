package h3

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// Socket is one UDP socket with the QUIC transport that reads and writes it. It serves one
// [Server] at a time (see Server.Serve) and keeps the connections of earlier Servers running
// until they end. Close it to close the transport, every connection on it and the socket.
type Socket struct {
	pc  net.PacketConn
	rc  *routedConn // nil unless pc is a *net.UDPConn
	g   *Generation
	tr  *quic.Transport
	cur atomic.Pointer[serverState]

	mu     sync.Mutex
	closed bool
}

// NewSocket takes over pc, typically a *net.UDPConn from net.ListenPacket("udp", addr) or one
// inherited from a parent process, as a socket of this process's [Generation] (see
// Process). Nothing else may read from or write to pc afterwards.
func NewSocket(pc net.PacketConn) *Socket { return Process().NewSocket(pc) }

// NewSocket takes over pc as a socket of g: its connection IDs carry g's tag, and when pc is
// a *net.UDPConn its datagrams take part in g's upgrade hand-over. Nothing else may read
// from or write to pc afterwards.
func (g *Generation) NewSocket(pc net.PacketConn) *Socket {
	s := &Socket{pc: pc, g: g}
	var conn net.PacketConn = pc
	if uc, ok := pc.(*net.UDPConn); ok {
		s.rc = newRoutedConn(g, uc)
		g.register(s.rc)
		conn = s.rc
	}
	s.tr = &quic.Transport{
		Conn:                  conn,
		ConnectionIDGenerator: cidGenerator{tag: g.tag},
		VerifySourceAddress:   s.verifySourceAddress,
		ConnContext:           s.connContext,
	}
	return s
}

// Addr is the socket's local address.
func (s *Socket) Addr() net.Addr { return s.pc.LocalAddr() }

// PacketConn returns the socket, for handing it over to another process.
func (s *Socket) PacketConn() net.PacketConn { return s.pc }

// Close closes every connection on the socket, then the socket. Servers serving on it return
// from Serve.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if st := s.cur.Swap(nil); st != nil {
		st.stopAccepting()
	}
	if s.rc != nil {
		s.rc.shutdown()
		s.g.unregister(s.rc)
	}
	err := s.tr.Close()
	return errors.Join(err, s.pc.Close())
}

// attach makes st the server that accepts new connections, closing the previous one's
// listener, and returns st's listener.
func (s *Socket) attach(st *serverState) (listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, net.ErrClosed
	}
	if prev := s.cur.Load(); prev != nil && prev != st {
		prev.stopAccepting()
	}
	var ln listener
	var err error
	if st.quic.Allow0RTT {
		ln, err = s.tr.ListenEarly(st.tls, st.quic)
	} else {
		ln, err = s.tr.Listen(st.tls, st.quic)
	}
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return ln, nil
}

// verifySourceAddress asks for a Retry round trip while the current server has many
// handshakes in flight.
func (s *Socket) verifySourceAddress(net.Addr) bool {
	st := s.cur.Load()
	return st != nil && st.handshakes.Load() >= st.retryAt
}

// errTooManyHandshakes refuses a connection attempt over the handshake cap.
var errTooManyHandshakes = errors.New("h3: too many handshakes in flight")

// connContext is called by quic-go for each new connection attempt that passed address
// validation: it takes a handshake slot or refuses the attempt.
func (s *Socket) connContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	st := s.cur.Load()
	if st == nil {
		return nil, ErrServerClosed
	}
	if st.handshakes.Add(1) > st.maxHS {
		st.handshakeEnded()
		st.report("refused")
		return nil, errTooManyHandshakes
	}
	hs := &handshake{st: st}
	// The context ends when the connection closes or its handshake fails; a handshake still
	// unsettled then has failed.
	context.AfterFunc(ctx, func() { hs.done(false) })
	return context.WithValue(ctx, handshakeKey{}, hs), nil
}

type handshakeKey struct{}

// handshake is one handshake slot, released exactly once.
type handshake struct {
	st   *serverState
	once sync.Once
}

func (h *handshake) done(ok bool) {
	h.once.Do(func() {
		h.st.handshakeEnded()
		if ok {
			h.st.report("ok")
		} else {
			h.st.report("failed")
		}
	})
}

// await settles the handshake of a connection accepted early (0-RTT).
func (h *handshake) await(c *quic.Conn) {
	select {
	case <-c.HandshakeComplete():
		h.done(true)
	case <-c.Context().Done():
		h.done(false)
	}
}

func (st *serverState) report(result string) {
	if f := st.srv.HandshakeHook; f != nil {
		f(result)
	}
}

// HandshakesInFlight reports the number of handshakes that have started and not yet ended.
func (s *Server) HandshakesInFlight() int { return int(s.config().handshakes.Load()) }
