package http1

import (
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

// clientUpgraded is the connection after a 101 (or a CONNECT tunnel): reads return the bytes
// already buffered first.
type clientUpgraded struct {
	cc     *ClientConn
	closed bool
}

func (u *clientUpgraded) Read(p []byte) (int, error) {
	in := &u.cc.in
	if in.r < in.w {
		n := copy(p, in.buf[in.r:in.w])
		in.r += n
		return n, nil
	}
	return u.cc.conn.Read(p)
}

func (u *clientUpgraded) Write(p []byte) (int, error) { return u.cc.conn.Write(p) }

// Close closes the connection and ends the round trip.
func (u *clientUpgraded) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	u.cc.in.r = u.cc.in.w
	err := u.cc.conn.Close()
	u.cc.finish(false)
	return err
}
