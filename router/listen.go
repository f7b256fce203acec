package router

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Handoff owns one bound listening socket. Its pump goroutine accepts connections and hands
// each to the current attached listener, so a reload that changes a server's settings (TLS,
// protocols, timeouts, limits, admin token) can move the socket to a new server without
// closing it: no connection attempt is refused during the switch.
type Handoff struct {
	ln    net.Listener
	cur   atomic.Pointer[vlistener]
	done  chan struct{} // closed when the pump has returned
	log   *slog.Logger
	once  sync.Once
	start sync.Once
}

// NewHandoff takes over ln; accepting starts at the first Attach. Nil log means
// slog.Default(). Close it to close ln.
func NewHandoff(ln net.Listener, log *slog.Logger) *Handoff {
	if log == nil {
		log = slog.Default()
	}
	return newHandoff(ln, log)
}

// newHandoff returns a Handoff whose pump starts at the first Attach.
func newHandoff(ln net.Listener, log *slog.Logger) *Handoff {
	return &Handoff{ln: ln, done: make(chan struct{}), log: log}
}

// Attach makes a new listener current and returns it. Connections accepted from now on go
// to it; the previous one gets no more. Closing the returned listener leaves the socket open.
func (s *Handoff) Attach() net.Listener { return s.attach() }

// Addr is the socket's address.
func (s *Handoff) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting and closes the socket.
func (s *Handoff) Close() error {
	s.close()
	return nil
}

func (s *Handoff) attach() *vlistener {
	v := &vlistener{sock: s, ch: make(chan net.Conn), closed: make(chan struct{})}
	s.cur.Store(v)
	s.start.Do(func() { go s.pump() })
	return v
}

// close stops accepting and waits until the pump has handed over or closed the connection
// it was holding.
func (s *Handoff) close() {
	s.once.Do(func() { s.ln.Close() })
	s.start.Do(func() { close(s.done) }) // never attached: no pump to wait for
	<-s.done
}

// pump accepts connections until the socket is closed.
func (s *Handoff) pump() {
	defer close(s.done)
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept error; retrying", "addr", s.ln.Addr().String(), "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			s.log.Error("accept failed; listener stopped", "addr", s.ln.Addr().String(), "err", err)
			return
		}
		backoff = 0
		s.handOff(c)
	}
}

// handOff gives c to the current virtual listener, following it if it is replaced while
// waiting, and closes c when there is none left.
func (s *Handoff) handOff(c net.Conn) {
	for {
		v := s.cur.Load()
		if v == nil {
			c.Close()
			return
		}
		select {
		case v.ch <- c:
			return
		case <-v.closed:
			if s.cur.Load() == v {
				c.Close()
				return
			}
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// vlistener is the net.Listener a server.Server serves on: it receives the connections of its
// socket while it is the socket's current one.
type vlistener struct {
	sock   *Handoff
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// Accept waits for the next connection handed over by the socket.
func (v *vlistener) Accept() (net.Conn, error) {
	select {
	case c := <-v.ch:
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	}
}

// Close stops this virtual listener; the socket stays open.
func (v *vlistener) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

// Addr is the socket's address.
func (v *vlistener) Addr() net.Addr { return v.sock.ln.Addr() }
