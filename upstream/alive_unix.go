//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// initAlive prepares the idle liveness check on the TCP conn below any TLS layer.
func (pc *pconn) initAlive(raw net.Conn) {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	pc.rc = rc
	pc.peekFn = pc.peek
}

// peek reads at most one byte without blocking (Go's sockets are non-blocking).
func (pc *pconn) peek(fd uintptr) bool {
	pc.peekN, pc.peekErr = syscall.Read(int(fd), pc.peekBuf[:])
	return true // never wait for readability
}

// alive reports whether an idle conn is still usable: a non-blocking one-byte read must find
// nothing to read (EAGAIN). End of file means the origin closed it; any byte means the origin
// sent something unsolicited (or a TLS alert), which leaves the conn unusable either way, so
// consuming it is harmless. One system call, no allocation.
func (pc *pconn) alive() bool {
	if pc.rc == nil {
		return true
	}
	if err := pc.rc.Read(pc.peekFn); err != nil {
		return false
	}
	return pc.peekErr == syscall.EAGAIN || pc.peekErr == syscall.EWOULDBLOCK
}
