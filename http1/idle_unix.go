//go:build unix

package http1

import (
	"io"
	"syscall"
)

// rawIdleWait: idle keep-alive connections wait for readability through the poller.
const rawIdleWait = true

// ready is the syscall.RawConn.Read callback of waitIdle. Its first call reads optimistically
// into a pooled buffer: on a busy connection the next request is usually there already, and
// this read is the only one it needs, with no deadline to set. When nothing has arrived
// (EAGAIN) it gives the buffer back, arms the wait's deadline and declines, so the runtime's
// poller waits for readability with no buffer held; later calls, after a wake-up, read what
// came. Reading first also matters for correctness: the poller only reports readiness that
// arrives after the wait starts.
func (sc *serverConn) ready(fd uintptr) bool {
	sc.readyCalls++
	in := &sc.in
	in.acquire()
	n, err := syscall.Read(int(fd), in.buf[in.w:])
	switch {
	case n > 0:
		in.w += n
		return true
	case err == syscall.EAGAIN:
		in.release()
		if sc.readyCalls == 1 {
			sc.armPark() // the drain's deadline, when the server drains
		}
		return false
	case err == syscall.EINTR:
		return true // the head parser's read retries
	case err == nil:
		sc.idleErr = io.EOF
	default:
		sc.idleErr = err
	}
	return true
}

// lastLook reads, without waiting, what arrived on a draining connection whose idle wait
// reached its deadline, and reports whether there is a request to serve: the deadline and
// the request may have come together.
func (sc *serverConn) lastLook() bool {
	in := &sc.in
	in.acquire()
	n := 0
	sc.life.raw.Control(func(fd uintptr) {
		n, _ = syscall.Read(int(fd), in.buf[in.w:])
	})
	if n <= 0 {
		in.release()
		return false
	}
	in.w += n
	return true
}

// pending reports whether bytes wait to be read on l's connection, without taking them and
// without waiting.
func (l *connLife) pending() bool {
	var b [1]byte
	n := 0
	l.raw.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return n > 0
}

// peekReady is the RawConn.Read callback of sleep. Its first call looks for bytes that
// arrived before the wait started (the poller reports only later ones) without taking them;
// later calls accept the poller's wake-up.
func (l *connLife) peekReady(fd uintptr) bool {
	l.peekCalls++
	if l.peekCalls > 1 {
		return true
	}
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	switch {
	case n > 0:
	case err == syscall.EAGAIN:
		return false
	case err == syscall.EINTR:
	case err == nil:
		l.peekErr = io.EOF
	default:
		l.peekErr = err
	}
	return true
}

// topRead is the RawConn.Read callback of inbuf.topUp: one read that never waits.
func (b *inbuf) topRead(fd uintptr) bool {
	if n, _ := syscall.Read(int(fd), b.topDst); n > 0 {
		b.topN = n
	}
	return true
}

// rawSendAwait is the RawConn.Read callback of ClientConn.sendAwait. Its first call writes the
// request; the wait that follows can only end with bytes that arrive after it, which is
// right for a response, as no response can precede its request (a closing origin's end of
// file is reported too: the write makes the peer reset the connection). Later calls read the
// response's first bytes into the read buffer.
func (cc *ClientConn) rawSendAwait(fd uintptr) bool {
	sa := &cc.sa
	sa.calls++
	if sa.calls == 1 {
		buf := cc.out.buf
		for sa.wrote < len(buf) {
			n, err := syscall.Write(int(fd), buf[sa.wrote:])
			if n > 0 {
				sa.wrote += n
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				sa.werr = err
				return true
			case n <= 0:
				sa.werr = syscall.EAGAIN
				return true
			}
		}
		return false
	}
	in := &cc.in
	n, err := syscall.Read(int(fd), in.space())
	switch {
	case n > 0:
		in.w += n
	case err == syscall.EAGAIN:
		return false
	case err == syscall.EINTR:
	case err == nil:
		in.err = io.EOF
	default:
		in.err = cc.opError("read", err)
	}
	return true
}
