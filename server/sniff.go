package server

import (
	"errors"
	"net"
	"time"
)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// prefixConn replays the bytes read while sniffing for the HTTP/2 preface before reading
// from the connection again.
type prefixConn struct {
	net.Conn
	buf  [len(h2Preface)]byte
	r, w int
}

// sniffH2C reads just enough of the first bytes to tell an h2c prior-knowledge client (RFC 9113
// section 3.3) from HTTP/1: any first byte but 'P' settles it, otherwise up to the full preface.
func (c *prefixConn) sniffH2C(timeout time.Duration) (bool, error) {
	c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.Conn.SetReadDeadline(time.Time{})
	for c.w < len(h2Preface) {
		n, err := c.Conn.Read(c.buf[c.w:])
		c.w += n
		if string(c.buf[:c.w]) != h2Preface[:c.w] {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection when the underlying one can, so that a graceful
// close (h2's GOAWAY, then FIN) does not turn into a reset while the client still sends:
// without it an h2c connection could only be closed whole, and a close with unread input
// resets the connection, which can discard the GOAWAY before the client reads it.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
