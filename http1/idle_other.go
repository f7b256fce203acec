//go:build !unix

package http1

// rawIdleWait: without a portable peek, idle connections wait with a one-byte read.
const rawIdleWait = false

func (sc *serverConn) ready(uintptr) bool { return true }

func (l *connLife) peekReady(uintptr) bool { return true }

func (b *inbuf) topRead(uintptr) bool { return true }

func (cc *ClientConn) rawSendAwait(uintptr) bool { return true }

func (sc *serverConn) lastLook() bool { return false }

func (l *connLife) pending() bool { return false }
