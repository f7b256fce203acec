package h2

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The server reads client frames through a filterConn, which corrects two behaviours of
// x/net/http2's server that RFC 9113 does not allow, without touching anything else:
//
//   - A SETTINGS frame that repeats a setting is a connection error in x/net. RFC 9113
//     section 6.5.3 says values are processed in the order they appear, so the filter
//     rewrites such a frame to carry each identifier once, with its last value: the same
//     outcome. When the frame has an invalid value, only the first invalid entry is kept, so
//     x/net reports the error that processing in order would reach.
//   - A request with a connection-specific field or a TE other than "trailers" gets a 400
//     response from x/net, while RFC 9113 section 8.2.2 makes it malformed: a stream error of
//     type PROTOCOL_ERROR (section 8.1.1). The filter decodes every header block with its own
//     HPACK decoder, kept in step with x/net's (same table size, same string limit, the same
//     blocks), flags exactly the requests x/net would answer with 400 (its check, mirrored),
//     and marks their HEADERS frame so that x/net resets the stream itself (markMalformed).
//     The marking never changes the HPACK dynamic table, so both tables stay in step.
//
// Everything else passes byte for byte. The filter reads no further ahead than x/net asks
// for: the preface and frame payloads go straight into the caller's buffer; only HEADERS,
// CONTINUATION and SETTINGS frames are held whole in a pooled buffer until they are decoded
// (x/net reads whole frames anyway). When the stream stops making sense (a frame larger than
// the limit, a broken header block, an HPACK error), x/net is about to end the connection
// with the right error, and the filter passes the rest through unchanged.

// Frame types, flags and sizes of RFC 9113 section 4.1 and 6.
const (
	frameHeaderLen    = 9
	frameHeaders      = 0x1
	frameSettings     = 0x4
	frameContinuation = 0x9
	flagAck           = 0x1
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	flagPriority      = 0x20
	settingLen        = 6
)

// headerTableSize is the HPACK dynamic table size of x/net's decoder, set explicitly on
// http2.Server so the filter's decoder matches it (4096, the protocol's initial value).
const headerTableSize = 4096

// malformedField is an HPACK literal header field without indexing and with a new name
// (RFC 7541 section 6.2.2): "Connection-Specific-Field" with an empty value. Field names
// must be lower case in HTTP/2 (RFC 9113 section 8.2.1), so x/net rejects it with a stream
// error of type PROTOCOL_ERROR.
var malformedField = []byte("\x00\x19Connection-Specific-Field\x00")

// heldSlack is the room a held frame needs beyond its payload for markMalformed: PRIORITY
// fields, or malformedField in the frame or in a CONTINUATION frame of its own.
var heldSlack = 2*frameHeaderLen + len(malformedField)

// Held frames live in pooled buffers of two sizes: small for typical header blocks, large
// for frames up to the default maximum frame size. Larger frames get their own buffer.
const smallHeld = 1 << 10

var (
	largeHeld     = frameHeaderLen + DefaultMaxReadFrameSize + heldSlack
	smallHeldPool = sync.Pool{New: func() any { b := make([]byte, smallHeld); return &b }}
	largeHeldPool = sync.Pool{New: func() any { b := make([]byte, largeHeld); return &b }}
)

// filterLimits are the x/net settings the filter must match.
type filterLimits struct {
	maxFrameSize  uint32 // http2.Server.MaxReadFrameSize
	maxHeaderList uint32 // the advertised SETTINGS_MAX_HEADER_LIST_SIZE
}

// filterConn is the net.Conn x/net's server reads from. Read is called by one goroutine
// at a time (x/net reads the preface, then hands reading to its frame reader); the other
// methods are the wrapped conn's.
type filterConn struct {
	net.Conn
	lim filterLimits

	preface int // bytes of the client preface still to pass through
	hdr     [frameHeaderLen]byte
	nhdr    int             // bytes of hdr read so far
	remain  int             // payload bytes of a passed-through frame still to read
	out     []byte          // bytes ready for x/net: hdr, or a held frame
	held    *[]byte         // the buffer behind out, if it is pooled or allocated
	err     error           // a read error that cut a held frame short; sticky
	pass    bool            // inspection stopped: everything passes through
	dec     *hpack.Decoder  // in step with x/net's decoder
	block   headerBlockScan // the header block being decoded
}

// headerBlockScan is what the filter tracks over one header block.
type headerBlockScan struct {
	open     bool   // a block started and END_HEADERS was not seen yet
	stream   uint32 // its stream
	headers  uint32 // x/net's remaining budget for fields other than "trailer"
	trailers uint32 // x/net's remaining budget for "trailer" fields
	cut      bool   // the list went over the limit: x/net truncates it and answers 431
	te       int    // number of te fields
	bad      bool   // a field x/net answers with 400 (connection-specific, bad te)
}

// tlsFilterConn keeps ConnectionState visible to x/net, which checks the TLS version and
// cipher suite of the connection (RFC 9113 section 9.2) and hands it to requests.
type tlsFilterConn struct {
	*filterConn
	cs interface{ ConnectionState() tls.ConnectionState }
}

func (c tlsFilterConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// newFilterConn wraps c for x/net's server.
func newFilterConn(c net.Conn, lim filterLimits) net.Conn {
	fc := &filterConn{Conn: c, lim: lim, preface: len(http2.ClientPreface)}
	fc.dec = hpack.NewDecoder(headerTableSize, fc.field)
	fc.dec.SetMaxStringLength(int(lim.maxHeaderList))
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tlsFilterConn{fc, cs}
	}
	return fc
}

// Read hands x/net the client's bytes, corrected as described above.
func (c *filterConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			if len(c.out) == 0 {
				c.release()
			}
			return n, nil
		}
		switch {
		case c.err != nil:
			return 0, c.err
		case c.pass:
			return c.Conn.Read(p)
		case c.preface > 0:
			n, err := c.Conn.Read(p[:min(len(p), c.preface)])
			c.preface -= n
			return n, err
		case c.remain > 0:
			n, err := c.Conn.Read(p[:min(len(p), c.remain)])
			c.remain -= n
			return n, err
		}
		n, err := c.Conn.Read(c.hdr[c.nhdr:])
		c.nhdr += n
		if c.nhdr < frameHeaderLen {
			if err != nil {
				return 0, err
			}
			continue
		}
		c.nhdr = 0
		c.frame()
	}
}

// frame decides what to do with the frame whose header is in c.hdr.
func (c *filterConn) frame() {
	h := c.hdr[:]
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	typ, flags := h[3], h[4]
	switch {
	case length > int(c.lim.maxFrameSize):
		// x/net answers FRAME_SIZE_ERROR and ends the connection.
		c.pass = true
		c.out = h
	case typ == frameHeaders || typ == frameContinuation:
		if f := c.hold(length); f != nil {
			c.headerFrame(f, typ, flags)
		}
	case c.block.open:
		// Any other frame inside a header block is a connection error (RFC 9113 section
		// 6.10), which x/net reports.
		c.pass = true
		c.out = h
	case typ == frameSettings && flags&flagAck == 0 && length > 0 && length%settingLen == 0:
		if f := c.hold(length); f != nil {
			c.out = dedupSettings(f)
		}
	default:
		c.out = h
		c.remain = length
	}
}

// hold reads the payload of the frame in c.hdr and returns the whole frame, with room for
// heldSlack more bytes. It returns nil, and makes the error sticky, when the read fails.
func (c *filterConn) hold(length int) []byte {
	n := frameHeaderLen + length
	var bp *[]byte
	switch need := n + heldSlack; {
	case need <= smallHeld:
		bp = smallHeldPool.Get().(*[]byte)
	case need <= largeHeld:
		bp = largeHeldPool.Get().(*[]byte)
	default:
		b := make([]byte, need)
		bp = &b
	}
	c.held = bp
	f := (*bp)[:n]
	copy(f, c.hdr[:])
	if _, err := io.ReadFull(c.Conn, f[frameHeaderLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
		c.release()
		return nil
	}
	c.out = f
	return f
}

// release returns the held buffer to its pool once x/net has read it all.
func (c *filterConn) release() {
	bp := c.held
	if bp == nil {
		return
	}
	c.held = nil
	c.out = nil
	switch cap(*bp) {
	case smallHeld:
		smallHeldPool.Put(bp)
	case largeHeld:
		largeHeldPool.Put(bp)
	}
}

// headerFrame decodes the fragment of a held HEADERS or CONTINUATION frame f, mirroring
// the checks x/net makes before it decodes one, and marks the block malformed at its end
// when x/net would have answered it with 400.
func (c *filterConn) headerFrame(f []byte, typ, flags byte) {
	id := binary.BigEndian.Uint32(f[5:9]) & (1<<31 - 1)
	frag := f[frameHeaderLen:]
	pad := 0
	if typ == frameHeaders {
		if c.block.open || id == 0 {
			c.pass = true
			return
		}
		if flags&flagPadded != 0 {
			if len(frag) < 1 {
				c.pass = true
				return
			}
			pad = int(frag[0])
			frag = frag[1:]
		}
		if flags&flagPriority != 0 {
			if len(frag) < 5 {
				c.pass = true
				return
			}
			frag = frag[5:]
		}
		if pad > len(frag) {
			// x/net resets the stream without decoding the block; a CONTINUATION that
			// follows is then a connection error.
			return
		}
		frag = frag[:len(frag)-pad]
		c.block = headerBlockScan{open: true, stream: id, headers: c.lim.maxHeaderList, trailers: c.lim.maxHeaderList}
		c.dec.SetEmitEnabled(true)
	} else if !c.block.open || id != c.block.stream {
		c.pass = true
		return
	}
	// x/net ends the connection, without decoding, on a fragment far past the list limit.
	if int64(len(frag)) > 2*(int64(c.block.headers)+int64(c.block.trailers)) {
		c.pass = true
		return
	}
	if _, err := c.dec.Write(frag); err != nil {
		c.pass = true
		return
	}
	if flags&flagEndHeaders == 0 {
		return
	}
	c.block.open = false
	if err := c.dec.Close(); err != nil {
		c.pass = true
		return
	}
	if c.block.bad && !c.block.cut {
		c.out = c.markMalformed(f, typ, flags, pad)
	}
}

// markMalformed makes x/net reject the request whose header block ends with frame f, with a
// stream error of type PROTOCOL_ERROR, without changing what the block decodes to:
//
//   - A block in a single HEADERS frame is made to depend on its own stream (RFC 9113
//     section 5.3.1: a stream error of type PROTOCOL_ERROR). x/net checks that after it
//     opened the stream, so it resets a stream it knows, and DATA frames the client already
//     sent on it are refunded and ignored, as for any stream it reset.
//   - Otherwise, or when the PRIORITY fields do not fit in the frame, malformedField is
//     appended to the block: inside f before its padding when f stays within the size
//     limit, else in a CONTINUATION frame of its own that now ends the block. x/net rejects
//     the field while decoding, before it opens the stream, so a DATA frame that follows on
//     that stream ends the connection (PROTOCOL_ERROR), as for any request x/net's framer
//     rejects.
func (c *filterConn) markMalformed(f []byte, typ, flags byte, pad int) []byte {
	n := len(f)
	length := n - frameHeaderLen
	if typ == frameHeaders {
		off := frameHeaderLen
		if flags&flagPadded != 0 {
			off++
		}
		if flags&flagPriority != 0 {
			exclusive := f[off] & 0x80
			copy(f[off:off+4], f[5:9])
			f[off] = f[off]&0x7f | exclusive
			return f
		}
		if length+5 <= int(c.lim.maxFrameSize) {
			f = f[:n+5]
			copy(f[off+5:], f[off:n])
			copy(f[off:off+4], f[5:9])
			f[off] &= 0x7f
			f[off+4] = 15 // weight 16, the default (RFC 7540 section 5.3.5)
			f[4] |= flagPriority
			putLength(f, length+5)
			return f
		}
	}
	if length+len(malformedField) <= int(c.lim.maxFrameSize) {
		f = f[:n+len(malformedField)]
		copy(f[n-pad+len(malformedField):], f[n-pad:n])
		copy(f[n-pad:], malformedField)
		putLength(f, length+len(malformedField))
		return f
	}
	f[4] &^= flagEndHeaders
	cont := f[n : n+frameHeaderLen+len(malformedField)]
	putLength(cont, len(malformedField))
	cont[3] = frameContinuation
	cont[4] = flagEndHeaders
	copy(cont[5:9], f[5:9])
	copy(cont[frameHeaderLen:], malformedField)
	return f[:n+len(cont)]
}

func putLength(h []byte, n int) {
	h[0], h[1], h[2] = byte(n>>16), byte(n>>8), byte(n)
}

// field sees every decoded field of a header block. It keeps x/net's accounting of the
// header list size (readMetaFrame: "trailer" fields have a budget of their own), since x/net
// stops decoding values once the list is too large and answers 431, and mirrors x/net's
// checkValidHTTP2RequestHeaders.
func (c *filterConn) field(hf hpack.HeaderField) {
	b := &c.block
	budget, size := &b.headers, hf.Size()
	if hf.Name == "trailer" {
		budget = &b.trailers
		n := uint32(strings.Count(hf.Value, ",") + 1)
		size = uint32(len(hf.Value)) - n + 1 + n*hpack.HeaderField{}.Size()
	}
	if size > *budget {
		c.dec.SetEmitEnabled(false)
		b.cut = true
		b.headers, b.trailers = 0, 0
		return
	}
	*budget -= size
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		b.bad = true
	case "te":
		b.te++
		if b.te > 1 || (hf.Value != "trailers" && hf.Value != "") {
			b.bad = true
		}
	}
}

// dedupSettings rewrites the SETTINGS frame f in place so that each identifier appears
// once, with its last value, at the place of its last occurrence (RFC 9113 section 6.5.3:
// values are processed in order). When a value is invalid, the frame is reduced to the
// first invalid entry, the one processing in order fails on. A frame without repeated
// identifiers is returned unchanged.
func dedupSettings(f []byte) []byte {
	p := f[frameHeaderLen:]
	n := len(p) / settingLen
	id := func(i int) uint16 { return binary.BigEndian.Uint16(p[i*settingLen:]) }
	dup := false
	var seen *[1 << 16 / 64]uint64
	if n > 8 {
		seen = new([1 << 16 / 64]uint64)
	}
	for i := 0; i < n && !dup; i++ {
		if seen != nil {
			w, bit := id(i)/64, uint64(1)<<(id(i)%64)
			dup = seen[w]&bit != 0
			seen[w] |= bit
			continue
		}
		for j := 0; j < i; j++ {
			if id(j) == id(i) {
				dup = true
				break
			}
		}
	}
	if !dup {
		return f
	}
	for i := range n {
		s := http2.Setting{ID: http2.SettingID(id(i)), Val: binary.BigEndian.Uint32(p[i*settingLen+2:])}
		if s.Valid() != nil {
			copy(p, p[i*settingLen:(i+1)*settingLen])
			putLength(f, settingLen)
			return f[:frameHeaderLen+settingLen]
		}
	}
	// Walk backwards keeping the last occurrence of each identifier, compacting the kept
	// entries towards the end, then move them to the front.
	if seen != nil {
		clear(seen[:])
	}
	k := n // kept entries are p[k*settingLen : n*settingLen]
	for i := n - 1; i >= 0; i-- {
		cur := id(i)
		keep := true
		if seen != nil {
			w, bit := cur/64, uint64(1)<<(cur%64)
			keep = seen[w]&bit == 0
			seen[w] |= bit
		} else {
			for j := k; j < n; j++ {
				if id(j) == cur {
					keep = false
					break
				}
			}
		}
		if keep {
			k--
			copy(p[k*settingLen:(k+1)*settingLen], p[i*settingLen:(i+1)*settingLen])
		}
	}
	kept := copy(p, p[k*settingLen:n*settingLen])
	putLength(f, kept)
	return f[:frameHeaderLen+kept]
}
