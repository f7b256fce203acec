package http1

import (
	"io"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// bodyMode is how the end of a body is found (RFC 9112 section 6.3).
type bodyMode uint8

const (
	bodyNone    bodyMode = iota
	bodyLength           // Content-Length
	bodyChunked          // Transfer-Encoding: chunked
	bodyClose            // until the connection closes (responses only)
)

// chunkState is the position of a chunked decoder (RFC 9112 section 7.1).
type chunkState uint8

const (
	csSize    chunkState = iota // expecting a chunk-size line
	csData                      // inside chunk data, remaining bytes left
	csDataEnd                   // expecting the CRLF after chunk data
	csTrailer                   // expecting the trailer section
)

// bodyReader streams a message body from an inbuf, removing the chunked framing. It is
// embedded in the connection state and reused for every message.
type bodyReader struct {
	in        *inbuf
	mode      bodyMode
	state     chunkState
	done      bool
	remaining int64 // bytes left: of the body (bodyLength) or of the chunk (bodyChunked)
	n         int64 // body bytes delivered so far
	max       int64 // largest chunked body accepted; 0 means unlimited
	lim       *Limits
	extTotal  int
	trailer   *message.Header
	src       fault.Source
	err       error
}

// init prepares b for a new body. cl is the Content-Length for bodyLength.
func (b *bodyReader) init(in *inbuf, mode bodyMode, cl int64, lim *Limits, trailer *message.Header, src fault.Source) {
	*b = bodyReader{in: in, mode: mode, remaining: cl, lim: lim, trailer: trailer, src: src,
		max: lim.MaxBodySize, done: mode == bodyNone || (mode == bodyLength && cl == 0)}
}

// Read implements io.Reader. Errors are *fault.Error values with b.src as the source.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	switch b.mode {
	case bodyLength:
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err := b.in.read(p)
		b.remaining -= int64(n)
		b.n += int64(n)
		if b.remaining == 0 {
			b.done = true
			return n, io.EOF
		}
		if err != nil {
			return n, b.fail(err)
		}
		return n, nil
	case bodyClose:
		n, err := b.in.read(p)
		b.n += int64(n)
		if err == io.EOF {
			b.done = true
			return n, io.EOF
		}
		if err != nil {
			return n, b.fail(err)
		}
		return n, nil
	}
	if err := b.advance(); err != nil {
		return 0, b.fail(err)
	}
	if b.done {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.in.read(p)
	b.remaining -= int64(n)
	b.n += int64(n)
	if b.remaining == 0 {
		b.state = csDataEnd
	}
	if err != nil && n == 0 {
		return 0, b.fail(err)
	}
	return n, nil
}

// drain reads and discards the rest of the body, at most limit bytes. It reports whether the
// body ended cleanly, leaving the connection ready for the next message.
func (b *bodyReader) drain(limit int64) bool {
	for budget := limit; ; {
		if b.err != nil {
			return false
		}
		if b.done {
			return true
		}
		if b.mode == bodyChunked {
			if err := b.advance(); err != nil {
				b.fail(err)
				return false
			}
			if b.done {
				return true
			}
		}
		if b.mode == bodyClose || b.remaining > budget {
			return false
		}
		if b.in.r == b.in.w {
			if err := b.in.fill(); err != nil {
				b.fail(err)
				return false
			}
		}
		k := int64(b.in.w - b.in.r)
		if k > b.remaining {
			k = b.remaining
		}
		b.in.r += int(k)
		b.remaining -= k
		b.n += k
		budget -= k
		if b.remaining == 0 {
			if b.mode == bodyLength {
				b.done = true
			} else {
				b.state = csDataEnd
			}
		}
	}
}

// advance runs the chunked decoder until it is inside chunk data or the body has ended.
func (b *bodyReader) advance() error {
	in := b.in
	for {
		switch b.state {
		case csData:
			return nil
		case csDataEnd:
			if err := in.need(2); err != nil {
				return err
			}
			if in.buf[in.r] != '\r' || in.buf[in.r+1] != '\n' {
				return errMissingChunkCRLF
			}
			in.r += 2
			b.state = csSize
		case csSize:
			line, err := in.readLine(b.lim.MaxChunkExtension+32, errChunkExtTooLong)
			if err != nil {
				return err
			}
			size, extLen, perr := parseChunkSize(line, b.lim.MaxChunkExtension)
			if perr != nil {
				return perr
			}
			if b.extTotal += extLen; b.extTotal > maxChunkExtTotalFactor*b.lim.MaxChunkExtension {
				return errChunkExtTooLong
			}
			if size == 0 {
				b.state = csTrailer
				continue
			}
			if b.max > 0 && b.n+size > b.max {
				return errBodyTooLarge
			}
			b.remaining, b.state = size, csData
			return nil
		case csTrailer:
			if err := b.readTrailer(); err != nil {
				return err
			}
			b.done = true
			return nil
		}
	}
}

// readTrailer reads the trailer section into b.trailer, pinning each line in the buffer
// (RFC 9112 section 7.1.2). Framing fields are dropped (RFC 9110 section 6.5.1).
func (b *bodyReader) readTrailer() error {
	in := b.in
	size, fields := 0, 0
	for {
		line, err := in.readLine(b.lim.MaxHeaderBytes, errTrailerTooLarge)
		if err != nil {
			return err
		}
		if size += len(line) + 2; size > b.lim.MaxHeaderBytes {
			return errTrailerTooLarge
		}
		if len(line) == 0 {
			return nil
		}
		name, value, perr := parseFieldLine(line)
		if perr != nil {
			return perr
		}
		if fields++; fields > b.lim.MaxHeaders {
			return errTrailerTooLarge
		}
		in.keep = in.r
		if b.trailer == nil || equalFoldBytes(name, "content-length") ||
			equalFoldBytes(name, "transfer-encoding") || equalFoldBytes(name, "host") {
			continue
		}
		b.trailer.Add(bstr(name), bstr(value))
	}
}

// fail records err as the body's sticky error, classified for b.src.
func (b *bodyReader) fail(err error) error {
	if pe, ok := err.(*protoError); ok {
		kind := fault.InvalidRequest
		switch {
		case b.src == fault.Upstream:
			kind = fault.InvalidResponse
		case pe.status == 413:
			kind = fault.RequestTooLarge
		case pe.status == 431:
			kind = fault.HeaderTooLarge
		}
		b.err = &fault.Error{Source: b.src, Kind: kind, Cause: pe}
		return b.err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	b.err = fault.Classify(b.src, err)
	return b.err
}

// parseChunkSize parses chunk-size [ chunk-ext ] (RFC 9112 section 7.1): hex digits only, no
// sign, prefix or whitespace, no overflow.
func parseChunkSize(line []byte, maxExt int) (size int64, extLen int, err *protoError) {
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if size > (1<<63-1)>>4 {
			return 0, 0, errBadChunkSize
		}
		size = size<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, 0, errBadChunkSize
	}
	ext := line[i:]
	if len(ext) > maxExt {
		return 0, 0, errChunkExtTooLong
	}
	if !validChunkExt(ext) {
		if e := skipWS(ext); len(e) == 0 || e[0] != ';' {
			return 0, 0, errBadChunkSize
		}
		return 0, 0, errBadChunkExt
	}
	return size, len(ext), nil
}

func skipWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func tokenLen(b []byte) int {
	i := 0
	for i < len(b) && isTchar[b[i]] {
		i++
	}
	return i
}

// validChunkExt checks *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ), where ext-val is a
// token or a quoted-string.
func validChunkExt(ext []byte) bool {
	for len(ext) > 0 {
		ext = skipWS(ext)
		if len(ext) == 0 || ext[0] != ';' {
			return false
		}
		ext = skipWS(ext[1:])
		n := tokenLen(ext)
		if n == 0 {
			return false
		}
		ext = ext[n:]
		if rest := skipWS(ext); len(rest) > 0 && rest[0] == '=' {
			ext = skipWS(rest[1:])
			if len(ext) > 0 && ext[0] == '"' {
				n = quotedLen(ext)
			} else {
				n = tokenLen(ext)
			}
			if n == 0 {
				return false
			}
			ext = ext[n:]
		}
	}
	return true
}

// quotedLen returns the length of the quoted-string at the start of b (RFC 9110 section
// 5.6.4), or 0 when it is malformed.
func quotedLen(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) || !isFieldByte[b[i+1]] {
				return 0
			}
			i++
		case !isFieldByte[c]:
			return 0
		}
	}
	return 0
}
