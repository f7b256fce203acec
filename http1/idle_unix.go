//go:build unix

package http1

import "syscall"

// rawIdleWait: idle keep-alive connections wait for readability through the poller.
const rawIdleWait = true

// ready is the syscall.RawConn.Read callback of waitIdle. The first call peeks without
// consuming: bytes (or end of file, or an error) already waiting mean the request can be read
// now; EAGAIN means nothing has arrived, so it declines and the runtime's poller waits for the
// socket to become readable, after which the second call accepts. Peeking first matters: the
// poller only reports readiness that arrives after the wait starts.
func (sc *serverConn) ready(fd uintptr) bool {
	sc.readyCalls++
	if sc.readyCalls > 1 {
		return true
	}
	_, _, err := syscall.Recvfrom(int(fd), sc.idle[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN
}
