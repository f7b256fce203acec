package http1

import (
	"bytes"
	"net"
	"sync"
	"syscall"
	"time"
)

// Buffer size classes. A connection starts with a small buffer and moves to a large one only
// when a head, a chunk-size line or a trailer section does not fit.
const (
	smallBufSize = 4 << 10
	largeBufSize = 64 << 10
)

var (
	smallBufPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}
	largeBufPool = sync.Pool{New: func() any { return new([largeBufSize]byte) }}
)

// inbuf is the read side of a connection: bytes received but not yet consumed, in a pooled
// buffer. Bytes before keep are pinned: strings handed out for the current message point at
// them, so they are never moved or overwritten until reset.
type inbuf struct {
	conn  net.Conn
	buf   []byte
	small *[smallBufSize]byte
	large *[largeBufSize]byte
	// r and w delimit the unread bytes buf[r:w]; keep <= r.
	r, w, keep int
	// perRead, when positive, is the read deadline in force for each read from conn (set
	// lazily, see lazyDeadline); negative means reads have no deadline; zero leaves the
	// deadline alone.
	perRead time.Duration
	rdl     lazyDeadline
	// err is a read error kept until the buffered bytes are consumed.
	err error
	// raw, when set, lets read top up a short copy from the buffer with a read that does
	// not wait (see topUp); topFn, topDst and topN are that read's callback state.
	raw    syscall.RawConn
	topFn  func(fd uintptr) bool
	topDst []byte
	topN   int
}

func (b *inbuf) buffered() int { return b.w - b.r }

func (b *inbuf) acquire() {
	if b.buf == nil {
		b.small = smallBufPool.Get().(*[smallBufSize]byte)
		b.buf = b.small[:]
	}
}

// release returns the buffers to their pools. Only valid when nothing is buffered and no
// string handed out points into the buffers any more.
func (b *inbuf) release() {
	if b.small != nil {
		smallBufPool.Put(b.small)
		b.small = nil
	}
	if b.large != nil {
		largeBufPool.Put(b.large)
		b.large = nil
	}
	b.buf = nil
	b.r, b.w, b.keep = 0, 0, 0
}

// reset ends the current message: pinned bytes are freed. Unread bytes (a pipelined next
// message) move to the front of the current buffer; with none, the buffers go back to the pool.
func (b *inbuf) reset() {
	if b.r == b.w {
		b.release()
		return
	}
	n := copy(b.buf, b.buf[b.r:b.w])
	b.r, b.w, b.keep = 0, n, 0
	// Give back the class that is not in use.
	if b.small != nil && len(b.buf) != smallBufSize {
		smallBufPool.Put(b.small)
		b.small = nil
	} else if b.large != nil && len(b.buf) == smallBufSize {
		largeBufPool.Put(b.large)
		b.large = nil
	}
}

// grow moves the unread bytes to a buffer of at least size bytes. The old buffer stays pinned
// (strings may point into it) until reset or release.
func (b *inbuf) grow(size int) {
	var nb []byte
	switch {
	case size <= largeBufSize && b.large == nil:
		b.large = largeBufPool.Get().(*[largeBufSize]byte)
		nb = b.large[:]
	default:
		nb = make([]byte, size)
	}
	n := copy(nb, b.buf[b.r:b.w])
	b.buf = nb
	b.r, b.w, b.keep = 0, n, 0
}

// fill reads more bytes from the connection after the unread ones. It compacts the unread
// bytes towards keep first and grows the buffer when it is full; callers bound the growth by
// checking their limits before each fill.
func (b *inbuf) fill() error {
	if b.err != nil {
		return b.err
	}
	p := b.space()
	b.armRead()
	n, err := b.conn.Read(p)
	b.w += n
	if err != nil {
		b.err = err
		if n > 0 {
			return nil
		}
		return err
	}
	return nil
}

// armRead puts the per-read deadline (perRead) in force before a read that may wait.
func (b *inbuf) armRead() {
	if b.perRead != 0 {
		b.rdl.arm(b.conn, false, max(b.perRead, 0))
	}
}

// space returns the free part of the buffer after the unread bytes, compacting them towards
// keep first and growing the buffer when it is full.
func (b *inbuf) space() []byte {
	b.acquire()
	if b.r > b.keep {
		n := copy(b.buf[b.keep:], b.buf[b.r:b.w])
		b.r, b.w = b.keep, b.keep+n
	}
	if b.w == len(b.buf) {
		b.grow(2 * len(b.buf))
	}
	return b.buf[b.w:]
}

// read copies buffered bytes into p, or reads from the connection when none are buffered;
// large reads go straight into p without passing through the buffer.
func (b *inbuf) read(p []byte) (int, error) {
	if b.r == b.w {
		if b.err != nil {
			return 0, b.err
		}
		if len(p) >= smallBufSize {
			b.armRead()
			n, err := b.conn.Read(p)
			if err != nil {
				b.err = err
			}
			return n, err
		}
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	if n < len(p) && b.raw != nil && len(p)-n >= smallBufSize/2 {
		n += b.topUp(p[n:])
	}
	return n, nil
}

// topUp reads into p what the socket holds right now, without waiting: a body that arrived
// partly with its head is then handed on in one piece rather than as a small first part that
// the proxy would flush alone. Errors (including EAGAIN: nothing there) are left for the next
// read to meet.
func (b *inbuf) topUp(p []byte) int {
	if b.topFn == nil {
		b.topFn = b.topRead
	}
	b.topDst, b.topN = p, 0
	b.raw.Read(b.topFn)
	b.topDst = nil
	return b.topN
}

// need makes at least n bytes readable in buf[r:w].
func (b *inbuf) need(n int) error {
	for b.w-b.r < n {
		if err := b.fill(); err != nil {
			return err
		}
	}
	return nil
}

// readLine consumes a line terminated by CRLF and returns it without the CRLF. The line must
// fit in max bytes, else errLong is returned. A bare LF or CR is an error.
func (b *inbuf) readLine(max int, errLong *protoError) ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(b.buf[b.r+scanned:b.w], '\n'); i >= 0 {
			end := b.r + scanned + i
			if end == b.r || b.buf[end-1] != '\r' {
				return nil, errBareLF
			}
			line := b.buf[b.r : end-1]
			if bytes.IndexByte(line, '\r') >= 0 {
				return nil, errBareCR
			}
			b.r = end + 1
			return line, nil
		}
		scanned = b.w - b.r
		if scanned > max+1 {
			return nil, errLong
		}
		if err := b.fill(); err != nil {
			return nil, err
		}
	}
}
