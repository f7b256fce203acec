package h3

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// routedConn is the UDP socket as quic-go's Transport sees it. It keeps quic-go's UDP
// optimizations: the embedded *net.UDPConn provides SyscallConn, ReadMsgUDP and WriteMsgUDP
// (GSO, ECN and packet info on the send path), and ReadBatch reads many datagrams per system
// call as quic-go does itself. On top of that it routes: while its generation has a parent
// to forward to, datagrams of the parent's connections are sent over the hand-over channel
// instead of being returned; once handed over (the old process during an upgrade), it no
// longer reads the UDP socket and returns the datagrams the new process forwards.
type routedConn struct {
	*net.UDPConn
	g     *Generation
	key   string
	batch *ipv4.PacketConn
	in    chan *forwardedPacket

	handed    atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func newRoutedConn(g *Generation, uc *net.UDPConn) *routedConn {
	return &routedConn{
		UDPConn: uc,
		g:       g,
		key:     uc.LocalAddr().String(),
		batch:   ipv4.NewPacketConn(uc),
		in:      make(chan *forwardedPacket, forwardQueue),
		closed:  make(chan struct{}),
	}
}

// ReadBatch is what quic-go calls to read datagrams (its batchConn interface).
func (c *routedConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		if c.handed.Load() {
			return c.readForwarded(ms)
		}
		n, err := c.batch.ReadBatch(ms, flags)
		if err != nil {
			if c.retry(err) {
				continue
			}
			return n, err
		}
		fw := c.g.fwd.Load()
		if fw == nil || n == 0 {
			return n, nil
		}
		if n = c.route(ms[:n], fw); n > 0 {
			return n, nil
		}
	}
}

// route forwards the parent's datagrams among ms and moves the others to the front,
// returning how many stay. Each message keeps its own buffers (quic-go tracks them by index),
// so kept datagrams are copied, not swapped; this happens only during an upgrade.
func (c *routedConn) route(ms []ipv4.Message, fw *forwarder) int {
	w := 0
	for i := range ms {
		m := &ms[i]
		b := m.Buffers[0][:m.N]
		if belongsTo(b, c.g.parent) {
			fw.send(c.key, m.Addr, m.OOB[:m.NN], b)
			continue
		}
		if w != i {
			d := &ms[w]
			d.N = copy(d.Buffers[0], b)
			d.NN = copy(d.OOB, m.OOB[:m.NN])
			d.Addr, d.Flags = m.Addr, m.Flags
		}
		w++
	}
	return w
}

// readForwarded returns one datagram forwarded by the new process.
func (c *routedConn) readForwarded(ms []ipv4.Message) (int, error) {
	select {
	case p := <-c.in:
		m := &ms[0]
		m.N = copy(m.Buffers[0], p.data)
		m.NN = copy(m.OOB, p.oob)
		m.Addr, m.Flags = p.addr, 0
		return 1, nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

// ReadFrom is the read path quic-go uses where it cannot use ancillary data; it routes like
// ReadBatch.
func (c *routedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if c.handed.Load() {
			select {
			case p := <-c.in:
				return copy(b, p.data), p.addr, nil
			case <-c.closed:
				return 0, nil, net.ErrClosed
			}
		}
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil {
			if c.retry(err) {
				continue
			}
			return n, addr, err
		}
		if fw := c.g.fwd.Load(); fw != nil && belongsTo(b[:n], c.g.parent) {
			fw.send(c.key, addr, nil, b[:n])
			continue
		}
		return n, addr, nil
	}
}

// retry reports whether a read error only means that the socket was handed over meanwhile
// (handOver interrupts the read with a past deadline).
func (c *routedConn) retry(err error) bool {
	if !c.handed.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	select {
	case <-c.closed:
		return false
	default:
		return true
	}
}

// handOver stops reading the UDP socket: the read in progress returns at once.
func (c *routedConn) handOver() {
	c.handed.Store(true)
	c.UDPConn.SetReadDeadline(time.Now())
}

// shutdown ends reads of forwarded datagrams, before the transport closes.
func (c *routedConn) shutdown() { c.closeOnce.Do(func() { close(c.closed) }) }
