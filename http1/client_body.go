package http1

import (
	"errors"
	"io"
	"net"

	"github.com/verge-edge/verge/fault"
)

// clientBody is a response body; Close ends the round trip.
type clientBody struct {
	cc *ClientConn
	br bodyReader
}

// Read reads the response body. Errors are *fault.Error from fault.Upstream.
func (b *clientBody) Read(p []byte) (int, error) {
	if b.cc.released {
		return 0, net.ErrClosed
	}
	n, err := b.br.Read(p)
	if err != nil && err != io.EOF && b.cc.canceled.Load() && b.cc.ctx != nil && b.cc.ctx.Err() != nil {
		err = &fault.Error{Source: fault.Upstream, Kind: fault.Canceled, Cause: b.cc.ctx.Err()}
	}
	return n, err
}

// Close ends the exchange. The connection stays open for another request only when the body
// was read to its end and the response allowed keep-alive; otherwise it is closed.
func (b *clientBody) Close() error {
	cc := b.cc
	if cc.released {
		return nil
	}
	cc.finish(cc.keepAlive && b.br.done && b.br.err == nil)
	return nil
}

// clientUpgraded is the connection after a 101 (or a CONNECT tunnel). Bytes that arrived with
// the response head are copied into pending when the stream starts, so that reads never touch
// the connection's pooled buffer, which Close may release from another goroutine.
type clientUpgraded struct {
	cc      *ClientConn
	pending []byte
	closed  bool
}

// start takes over the bytes buffered after the response head.
func (u *clientUpgraded) start() {
	u.closed, u.pending = false, nil
	in := &u.cc.in
	if in.r < in.w {
		u.pending = append([]byte(nil), in.buf[in.r:in.w]...)
		in.r = in.w
	}
}

func (u *clientUpgraded) Read(p []byte) (int, error) {
	if len(u.pending) > 0 {
		n := copy(p, u.pending)
		u.pending = u.pending[n:]
		return n, nil
	}
	return u.cc.conn.Read(p)
}

func (u *clientUpgraded) Write(p []byte) (int, error) { return u.cc.conn.Write(p) }

// CloseWrite half-closes the connection: the peer reads end of file and may still send. It
// fails with errors.ErrUnsupported when the connection cannot half-close.
func (u *clientUpgraded) CloseWrite() error {
	if cw, ok := u.cc.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// Close closes the connection and ends the round trip. It may be called while another
// goroutine is blocked in Read, which then fails.
func (u *clientUpgraded) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	err := u.cc.conn.Close()
	u.cc.finish(false)
	return err
}
