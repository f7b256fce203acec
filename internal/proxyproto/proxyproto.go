// Package proxyproto reads and writes PROXY protocol headers, version 1 (text) and version 2
// (binary), as HAProxy's proxy-protocol.txt specifies them. It is the only importer of
// github.com/pires/go-proxyproto, which does the parsing and formatting; this package adds
// what Verge needs around it: a bounded read with a deadline that never loses the bytes a
// client sent after the header, and plain netip addresses.
package proxyproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// MaxHeaderBytes is the longest header Read accepts: the 16-byte fixed part of a v2 header
// plus the largest length it can state. A v1 header is at most 107 bytes (the library
// refuses a longer line).
const MaxHeaderBytes = 16 + 65535

// ErrNoHeader is returned by Read when the connection does not start with a PROXY header.
var ErrNoHeader = errors.New("proxyproto: connection does not start with a PROXY protocol header")

// Header is one parsed header.
type Header struct {
	// Version is 1 or 2.
	Version uint8
	// Local is true for a v2 LOCAL command (the sender's own connection, a health check) and
	// for a v1 "UNKNOWN" line, and also when the header names no TCP addresses (v2 UNSPEC,
	// UDP or Unix sockets): the connection's own addresses then stand.
	Local bool
	// Src and Dst are the client's address and the address it connected to, as the sender
	// saw them. Invalid when Local.
	Src, Dst netip.AddrPort
}

// readers are reused between connections: a header read is short and the buffer goes back
// to the pool at once.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 512) }}

// Read reads the PROXY header at the start of c within timeout (zero means no deadline) and
// returns it with the bytes the client sent after it that were read along (give them to
// whatever reads c next). A v1 header must arrive in one piece (one read), as the
// specification asks of senders: a line split across reads is refused, which also stops a
// sender that trickles it. The read deadline of c is cleared on return. Anything but a
// well-formed header is an error (ErrNoHeader when the first bytes are not a signature): the
// caller should close c. TLVs of a v2 header are skipped.
func Read(c net.Conn, timeout time.Duration) (Header, []byte, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return Header{}, nil, err
		}
		defer c.SetReadDeadline(time.Time{})
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	h, err := ReadFrom(br)
	if err != nil {
		return Header{}, nil, err
	}
	var rest []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		rest = append([]byte(nil), b...)
	}
	return h, rest, nil
}

// ReadFrom parses one header from r, leaving r at the first byte after it.
func ReadFrom(r *bufio.Reader) (Header, error) {
	h, err := pp.Read(r)
	if err != nil {
		if errors.Is(err, pp.ErrNoProxyProtocol) {
			return Header{}, ErrNoHeader
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, fmt.Errorf("proxyproto: %w", err)
	}
	out := Header{Version: h.Version, Local: true}
	if h.Command.IsLocal() {
		return out, nil
	}
	src, sok := h.SourceAddr.(*net.TCPAddr)
	dst, dok := h.DestinationAddr.(*net.TCPAddr)
	if !sok || !dok {
		return out, nil
	}
	out.Src, out.Dst = src.AddrPort(), dst.AddrPort()
	out.Src = netip.AddrPortFrom(out.Src.Addr().Unmap(), out.Src.Port())
	out.Dst = netip.AddrPortFrom(out.Dst.Addr().Unmap(), out.Dst.Port())
	out.Local = !out.Src.IsValid()
	return out, nil
}

// Format returns the header of the given version (1 or 2) for a connection from src to dst.
// When either address is invalid the header is a v1 "PROXY UNKNOWN" line or a v2 LOCAL
// command: the receiver then uses the connection's own addresses.
func Format(version uint8, src, dst netip.AddrPort) ([]byte, error) {
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("proxyproto: unknown version %d", version)
	}
	var h *pp.Header
	if src.IsValid() && dst.IsValid() {
		h = pp.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	} else {
		h = &pp.Header{Version: version, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}
	}
	return h.Format()
}

// Write writes the header of Format to w.
func Write(w io.Writer, version uint8, src, dst netip.AddrPort) error {
	b, err := Format(version, src, dst)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
