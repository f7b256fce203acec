package http1

import (
	"net"
	"sync"
	"time"
)

var writeBufPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}

// outbuf is the write side of a connection: a pooled buffer in front of the conn. Large writes
// bypass the buffer. Errors are sticky. Backpressure comes from the blocking conn.Write.
type outbuf struct {
	conn     net.Conn
	arr      *[smallBufSize]byte
	buf      []byte
	perWrite time.Duration // when positive, the write deadline in force for each write
	wdl      lazyDeadline
	err      error
	// vec and bufs are write's scratch for one writev of the buffer and a large write (and
	// writeThen's, with a tail).
	vec  [3][]byte
	bufs net.Buffers
}

func (w *outbuf) acquire() {
	if w.arr == nil {
		w.arr = writeBufPool.Get().(*[smallBufSize]byte)
		w.buf = w.arr[:0]
	}
}

// release returns the buffer to the pool; unflushed bytes are dropped.
func (w *outbuf) release() {
	if w.arr != nil {
		writeBufPool.Put(w.arr)
		w.arr, w.buf = nil, nil
	}
}

func (w *outbuf) buffered() int { return len(w.buf) }

// connWrite writes p to the connection with the per-write deadline.
func (w *outbuf) connWrite(p []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.perWrite > 0 {
		w.wdl.arm(w.conn, true, w.perWrite)
	}
	if _, err := w.conn.Write(p); err != nil {
		w.err = err
		return err
	}
	return nil
}

// flush writes the buffered bytes.
func (w *outbuf) flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.connWrite(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *outbuf) writeString(s string) {
	w.acquire()
	for len(s) > 0 {
		if len(w.buf) == cap(w.buf) {
			if w.flush() != nil {
				return
			}
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], s)
		w.buf = w.buf[:len(w.buf)+n]
		s = s[n:]
	}
}

func (w *outbuf) writeByte(c byte) {
	w.acquire()
	if len(w.buf) == cap(w.buf) && w.flush() != nil {
		return
	}
	w.buf = append(w.buf, c)
}

// writeInt appends n in decimal (or hex) without allocating.
func (w *outbuf) writeInt(n int64, hex bool) {
	w.acquire()
	if cap(w.buf)-len(w.buf) < 20 && w.flush() != nil {
		return
	}
	if hex {
		w.buf = appendHex(w.buf, n)
	} else {
		w.buf = appendInt(w.buf, n)
	}
}

// write buffers p, or writes it straight to the connection after the buffered bytes when it
// would not fit.
func (w *outbuf) write(p []byte) error {
	w.acquire()
	if len(w.buf)+len(p) <= cap(w.buf) {
		w.buf = append(w.buf, p...)
		return w.err
	}
	if len(p) < cap(w.buf)/2 {
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:cap(w.buf)]
		if err := w.flush(); err != nil {
			return err
		}
		w.buf = append(w.buf, p[n:]...)
		return nil
	}
	if len(w.buf) == 0 || w.err != nil {
		return w.connWrite(p)
	}
	// What is buffered (typically a response head) and p leave in one writev.
	if w.perWrite > 0 {
		w.wdl.arm(w.conn, true, w.perWrite)
	}
	w.vec[0], w.vec[1] = w.buf, p
	w.bufs = w.vec[:]
	_, err := w.bufs.WriteTo(w.conn)
	w.vec, w.bufs = [3][]byte{}, nil
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

// writeThen writes p then tail (a chunk of a chunked body and the CRLF that ends it). When p
// goes straight to the connection, the buffered bytes, p and tail leave in one writev, so
// that the tail does not wait in the buffer for a flush of its own.
func (w *outbuf) writeThen(p, tail []byte) error {
	w.acquire()
	if len(w.buf)+len(p)+len(tail) <= cap(w.buf) || len(p) < cap(w.buf)/2 || w.err != nil {
		if err := w.write(p); err != nil {
			return err
		}
		return w.write(tail)
	}
	if w.perWrite > 0 {
		w.wdl.arm(w.conn, true, w.perWrite)
	}
	w.vec[0], w.vec[1], w.vec[2] = w.buf, p, tail
	w.bufs = w.vec[:]
	_, err := w.bufs.WriteTo(w.conn)
	w.vec, w.bufs = [3][]byte{}, nil
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

// crlf ends a chunk of a chunked body.
var crlf = []byte("\r\n")
