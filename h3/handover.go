package h3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// EnvHandoverTag names the environment variable through which a process upgrading itself
// passes its connection ID tag to the new process (see [Generation]).
const EnvHandoverTag = "VERGE_H3_PARENT_TAG"

// handoverBuffer is the socket buffer asked for on each end of a hand-over channel, 4 MiB
// (the kernel caps it at net.core.wmem_max / rmem_max); a full channel drops packets as a
// congested network would.
const handoverBuffer = 4 << 20

// forwardQueue is how many forwarded packets wait per socket in the old process before
// further ones are dropped.
const forwardQueue = 1024

// Generation is one process generation's part in a binary upgrade that keeps QUIC
// connections alive. Every connection ID its sockets choose starts with its Tag. During an
// upgrade the old and the new process hold the same UDP sockets, but only the new one reads
// them: it forwards the datagrams addressed to the old process's connection IDs over a
// hand-over channel (a unix SEQPACKET socket pair the old process creates and passes on),
// with the client's address, and the old process feeds them to its connections while
// writing its replies straight to the shared UDP socket. So the old process's connections
// drain without loss while new connections go to the new process.
//
// The old process calls PrepareHandover before starting the new one and Handover.Start once
// it stops accepting; the new process calls Inherit with its end of the channel. Sockets
// made by NewSocket belong to [Process].
type Generation struct {
	tag       Tag
	parent    Tag
	hasParent bool

	mu      sync.Mutex
	sockets map[string]*routedConn // by local address

	fwd atomic.Pointer[forwarder] // to the parent generation; nil when none

	forwarded atomic.Uint64
	dropped   atomic.Uint64
}

var (
	procOnce sync.Once
	proc     *Generation
)

// Process returns this process's generation. Its parent's tag is read once from the
// EnvHandoverTag environment variable (unset or malformed: no parent), and its own tag is
// random and different from the parent's.
func Process() *Generation {
	procOnce.Do(func() {
		var parent *Tag
		if s := os.Getenv(EnvHandoverTag); s != "" {
			if t, err := ParseTag(s); err == nil {
				parent = &t
			}
		}
		proc = NewGeneration(parent)
	})
	return proc
}

// NewGeneration returns a generation with a random tag different from parent's; parent nil
// means the generation has no parent to forward to. Tests and embedders that run several
// generations in one process use it; servers use [Process].
func NewGeneration(parent *Tag) *Generation {
	g := &Generation{tag: newTag(parent), sockets: map[string]*routedConn{}}
	if parent != nil {
		g.parent, g.hasParent = *parent, true
	}
	return g
}

// Tag is the tag starting every connection ID this generation chooses.
func (g *Generation) Tag() Tag { return g.tag }

// Forwarded reports how many datagrams this generation forwarded to its parent, and how
// many it dropped because the hand-over channel was full.
func (g *Generation) Forwarded() (forwarded, dropped uint64) {
	return g.forwarded.Load(), g.dropped.Load()
}

// Inherit makes g forward the datagrams of its parent's connections to f, the new process's
// end of the hand-over channel, until the parent closes its end (when it exits). It takes
// over f. It fails when g has no parent tag.
func (g *Generation) Inherit(f *os.File) error {
	defer f.Close()
	if !g.hasParent {
		return errors.New("h3: hand-over channel inherited without the parent's tag")
	}
	c, err := net.FileConn(f)
	if err != nil {
		return fmt.Errorf("h3: hand-over channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("h3: hand-over channel is a %T, not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return fmt.Errorf("h3: hand-over channel: %w", err)
	}
	fw := &forwarder{g: g, conn: uc, raw: raw}
	if old := g.fwd.Swap(fw); old != nil {
		old.close()
	}
	return nil
}

// register adds a socket; the hand-over of its packets is keyed by its local address.
func (g *Generation) register(c *routedConn) {
	g.mu.Lock()
	g.sockets[c.key] = c
	g.mu.Unlock()
}

func (g *Generation) unregister(c *routedConn) {
	g.mu.Lock()
	if g.sockets[c.key] == c {
		delete(g.sockets, c.key)
	}
	g.mu.Unlock()
}

// forwarder sends datagrams to the parent generation, never blocking the socket's reader.
type forwarder struct {
	g    *Generation
	conn *net.UnixConn
	raw  syscall.RawConn
	once sync.Once
}

var forwardBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// send forwards one datagram read on the socket with local address key from remote, with
// its ancillary data (ECN, packet info). A full channel drops it; a channel whose other end
// is gone ends forwarding.
func (fw *forwarder) send(key string, remote net.Addr, oob, payload []byte) {
	ua, ok := remote.(*net.UDPAddr)
	if !ok || len(key) > 255 || len(oob) > 0xffff {
		fw.g.dropped.Add(1)
		return
	}
	bp := forwardBufs.Get().(*[]byte)
	b := appendForwarded((*bp)[:0], key, ua.AddrPort(), oob, payload)
	var serr error
	err := fw.raw.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), b, nil, nil, syscall.MSG_DONTWAIT)
		return true
	})
	*bp = b
	forwardBufs.Put(bp)
	if err == nil {
		err = serr
	}
	switch {
	case err == nil:
		fw.g.forwarded.Add(1)
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ENOBUFS):
		fw.g.dropped.Add(1)
	default: // the parent is gone
		fw.g.dropped.Add(1)
		fw.g.fwd.CompareAndSwap(fw, nil)
		fw.close()
	}
}

func (fw *forwarder) close() { fw.once.Do(func() { fw.conn.Close() }) }

// appendForwarded encodes one forwarded datagram: the socket's local address (length and
// bytes), the client's address (length and netip binary form), the ancillary data (2-byte
// length and bytes), then the datagram.
func appendForwarded(b []byte, key string, remote netip.AddrPort, oob, payload []byte) []byte {
	b = append(b, byte(len(key)))
	b = append(b, key...)
	n := len(b)
	b = append(b, 0)
	b, _ = remote.AppendBinary(b)
	b[n] = byte(len(b) - n - 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(oob)))
	b = append(b, oob...)
	return append(b, payload...)
}

// parseForwarded decodes what appendForwarded encoded.
func parseForwarded(b []byte) (key string, remote netip.AddrPort, oob, payload []byte, err error) {
	bad := errors.New("h3: malformed forwarded datagram")
	if len(b) < 1 || len(b) < 1+int(b[0])+1 {
		return "", remote, nil, nil, bad
	}
	key, b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	n := int(b[0])
	if len(b) < 1+n+2 {
		return "", remote, nil, nil, bad
	}
	if err := remote.UnmarshalBinary(b[1 : 1+n]); err != nil {
		return "", remote, nil, nil, bad
	}
	b = b[1+n:]
	o := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+o {
		return "", remote, nil, nil, bad
	}
	return key, remote, b[2 : 2+o], b[2+o:], nil
}

// Handover is the old process's end of one upgrade's hand-over channel.
type Handover struct {
	g     *Generation
	conn  *net.UnixConn
	child *os.File

	start sync.Once
	close sync.Once

	received, dropped atomic.Uint64
}

// PrepareHandover creates the hand-over channel for an upgrade. Pass File to the new
// process (it calls Inherit with it) together with Tag in EnvHandoverTag, call Start when
// this process stops accepting, and Close when it is done (or when the upgrade failed).
func (g *Generation) PrepareHandover() (*Handover, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET, 0)
	if err != nil {
		return nil, fmt.Errorf("h3: hand-over channel: %w", err)
	}
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
	}
	syscall.SetsockoptInt(fds[0], syscall.SOL_SOCKET, syscall.SO_RCVBUF, handoverBuffer)
	syscall.SetsockoptInt(fds[1], syscall.SOL_SOCKET, syscall.SO_SNDBUF, handoverBuffer)
	own := os.NewFile(uintptr(fds[0]), "h3-handover")
	c, err := net.FileConn(own)
	own.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, fmt.Errorf("h3: hand-over channel: %w", err)
	}
	return &Handover{
		g:     g,
		conn:  c.(*net.UnixConn),
		child: os.NewFile(uintptr(fds[1]), "h3-handover-child"),
	}, nil
}

// File is the new process's end of the channel. Handover.Close closes it; the new process
// gets a copy (tableflip's Fds.AddFile duplicates it).
func (h *Handover) File() *os.File { return h.child }

// Start makes every socket of the generation stop reading its UDP socket (the new process
// reads it from now on) and read the datagrams the new process forwards instead. Writes
// still go to the UDP socket. Calling it again does nothing.
func (h *Handover) Start() {
	h.start.Do(func() {
		h.g.mu.Lock()
		for _, c := range h.g.sockets {
			c.handOver()
		}
		h.g.mu.Unlock()
		go h.receive()
	})
}

// receive hands forwarded datagrams to the socket they were read on.
func (h *Handover) receive() {
	buf := make([]byte, 64<<10)
	for {
		n, err := h.conn.Read(buf)
		if err != nil {
			return
		}
		key, remote, oob, payload, err := parseForwarded(buf[:n])
		if err != nil {
			continue
		}
		h.g.mu.Lock()
		c := h.g.sockets[key]
		h.g.mu.Unlock()
		if c == nil {
			h.dropped.Add(1)
			continue
		}
		p := &forwardedPacket{addr: net.UDPAddrFromAddrPort(remote)}
		p.data = append(p.buf[:0], payload...)
		p.oob = append([]byte(nil), oob...)
		select {
		case c.in <- p:
			h.received.Add(1)
		default:
			h.dropped.Add(1)
		}
	}
}

// Received reports how many datagrams the new process forwarded to this one's sockets, and
// how many of those were dropped (a socket's queue was full, or no socket has the address).
func (h *Handover) Received() (received, dropped uint64) {
	return h.received.Load(), h.dropped.Load()
}

// Close closes both ends of the channel this process holds; the sockets that were handed
// over read nothing more.
func (h *Handover) Close() error {
	h.close.Do(func() {
		h.conn.Close()
		h.child.Close()
	})
	return nil
}

// forwardedPacket is one datagram received from the new process.
type forwardedPacket struct {
	addr *net.UDPAddr
	oob  []byte
	data []byte
	buf  [1500]byte
}
