package h2

import (
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/verge-edge/verge/internal/httpbridge"
	"github.com/verge-edge/verge/message"
)

// Response header blocks are encoded without the HPACK dynamic table (RFC 7541): fields use
// the static table's names where it has them and are otherwise literals "without indexing",
// Huffman-coded when that is shorter. The encoding depends on nothing but the fields, so a
// stream encodes its block on its own goroutine, outside the connection's lock, and blocks
// may go on the wire in any order. This is what NGINX does by default; it costs some bytes
// on repeated fields and saves the per-connection table search and its lock.

// staticNames maps a lower-case field name to its first index in the HPACK static table.
var staticNames = map[string]uint8{
	":authority": 1, ":method": 2, ":path": 4, ":scheme": 6, ":status": 8,
	"accept-charset": 15, "accept-encoding": 16, "accept-language": 17, "accept-ranges": 18,
	"accept": 19, "access-control-allow-origin": 20, "age": 21, "allow": 22,
	"authorization": 23, "cache-control": 24, "content-disposition": 25,
	"content-encoding": 26, "content-language": 27, "content-length": 28,
	"content-location": 29, "content-range": 30, "content-type": 31, "cookie": 32, "date": 33,
	"etag": 34, "expect": 35, "expires": 36, "from": 37, "host": 38, "if-match": 39,
	"if-modified-since": 40, "if-none-match": 41, "if-range": 42, "if-unmodified-since": 43,
	"last-modified": 44, "link": 45, "location": 46, "max-forwards": 47,
	"proxy-authenticate": 48, "proxy-authorization": 49, "range": 50, "referer": 51,
	"refresh": 52, "retry-after": 53, "server": 54, "set-cookie": 55,
	"strict-transport-security": 56, "transfer-encoding": 57, "user-agent": 58, "vary": 59,
	"via": 60, "www-authenticate": 61,
}

// appendHPACKInt appends v with an n-bit prefix whose other bits are first (RFC 7541
// section 5.1).
func appendHPACKInt(b []byte, first byte, n uint8, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, first|byte(v))
	}
	b = append(b, first|byte(limit))
	v -= limit
	for v >= 128 {
		b = append(b, byte(v&0x7f)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendHPACKString appends s as a string literal, Huffman-coded when that is shorter.
func appendHPACKString(b []byte, s string) []byte {
	if h := hpack.HuffmanEncodeLength(s); h < uint64(len(s)) {
		b = appendHPACKInt(b, 0x80, 7, h)
		return hpack.AppendHuffmanString(b, s)
	}
	b = appendHPACKInt(b, 0, 7, uint64(len(s)))
	return append(b, s...)
}

// appendStatus appends :status, indexed when the static table has the code.
func appendStatus(b []byte, status int) []byte {
	switch status {
	case 200:
		return append(b, 0x80|8)
	case 204:
		return append(b, 0x80|9)
	case 206:
		return append(b, 0x80|10)
	case 304:
		return append(b, 0x80|11)
	case 400:
		return append(b, 0x80|12)
	case 404:
		return append(b, 0x80|13)
	case 500:
		return append(b, 0x80|14)
	}
	var d [3]byte
	b = append(b, 0x08, 3) // literal without indexing, name :status, 3-byte raw value
	return append(b, strconv.AppendInt(d[:0], int64(status), 10)...)
}

// appendLiteral appends a literal field without indexing; name is lower case.
func appendLiteral(b []byte, name, value string) []byte {
	if idx, ok := staticNames[name]; ok {
		b = appendHPACKInt(b, 0, 4, uint64(idx))
	} else {
		b = append(b, 0)
		b = appendHPACKString(b, name)
	}
	return appendHPACKString(b, value)
}

// lowerName returns name in lower case, using buf when it must change and fits. ok is false
// when name is not a valid field name.
func lowerName(buf *[64]byte, name string) (string, bool) {
	if !httpguts.ValidHeaderFieldName(name) {
		return "", false
	}
	upper := false
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper {
		return name, true
	}
	if len(name) > len(buf) {
		return strings.ToLower(name), true
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return unsafe.String(&buf[0], len(name)), true
}

// appendResponseHead encodes a response head: :status, the fields of h that may travel on
// HTTP/2 (hop-by-hop and invalid fields dropped) and content-length from contentLength
// (-1 for none) in place of any content-length field of h.
func appendResponseHead(b []byte, status int, h *message.Header, contentLength int64) []byte {
	b = appendStatus(b, status)
	conn := h.Has("Connection")
	fields := h.Fields()
	var buf [64]byte
	for i := range fields {
		f := &fields[i]
		if httpbridge.SkipField(h, f, conn) || message.EqualFold(f.Name, "content-length") {
			continue
		}
		name, ok := lowerName(&buf, f.Name)
		if !ok || !httpguts.ValidHeaderFieldValue(f.Value) {
			continue
		}
		b = appendLiteral(b, name, f.Value)
	}
	if contentLength >= 0 {
		var d [20]byte
		b = appendHPACKInt(b, 0, 4, 28)
		v := strconv.AppendInt(d[:0], contentLength, 10)
		b = appendHPACKInt(b, 0, 7, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// appendTrailers encodes the trailer fields of h that are allowed in trailers.
func appendTrailers(b []byte, h *message.Header) []byte {
	fields := h.Fields()
	var buf [64]byte
	for i := range fields {
		f := &fields[i]
		name, ok := lowerName(&buf, f.Name)
		if !ok || message.ConnectionSpecific(name) || badTrailer(name) ||
			!httpguts.ValidHeaderFieldValue(f.Value) {
			continue
		}
		b = appendLiteral(b, name, f.Value)
	}
	return b
}

// badTrailer reports whether a lower-case name may not be sent or accepted as a trailer
// field: framing, routing, authentication and control fields (RFC 9110 section 6.5.1).
func badTrailer(name string) bool {
	switch name {
	case "authorization", "cache-control", "connection", "content-encoding", "content-length",
		"content-range", "content-type", "expect", "host", "keep-alive", "max-forwards",
		"pragma", "proxy-authenticate", "proxy-authorization", "proxy-connection", "range",
		"realm", "te", "trailer", "transfer-encoding", "www-authenticate":
		return true
	}
	return false
}
