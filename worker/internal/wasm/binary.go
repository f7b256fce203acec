package wasm

import "errors"

// Decoding and encoding of the WebAssembly binary format, for instrument.

// valType reads a value type, refusing the multi-byte reference types of later proposals.
func valType(r *reader) {
	switch r.byte() {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
	default:
		r.fail(errUninstrumentable)
	}
}

// vecStart reads a vector's length and returns the output buffer started with it. A nil
// body is an empty vector (a section instrument adds).
func vecStart(body []byte) ([]byte, *reader, uint32) {
	r := newReader(body)
	n := uint32(0)
	if body != nil {
		n = r.u32()
	}
	out := appendU32(make([]byte, 0, len(body)+16), n)
	r.consumed()
	return out, r, n
}

// appendEntry appends one entry to a vector (nil for an empty one).
func appendEntry(vec, entry []byte) []byte {
	r := newReader(vec)
	n := uint32(0)
	if vec != nil {
		n = r.u32()
	}
	b := appendU32(make([]byte, 0, len(vec)+len(entry)+5), n+1)
	b = append(b, r.b...)
	return append(b, entry...)
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b    []byte
	mark []byte // where the bytes not yet returned by consumed start
	err  error
}

func newReader(b []byte) *reader { return &reader{b: b, mark: b} }

var errTruncated = errors.New("truncated")

func (r *reader) done() bool { return r.err != nil || len(r.b) == 0 }

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// end reports the first error, or trailing bytes.
func (r *reader) end() error {
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("unexpected bytes at the end")
	}
	return r.err
}

// consumed returns the bytes read since the previous call (or the start).
func (r *reader) consumed() []byte {
	c := r.mark[:len(r.mark)-len(r.b)]
	r.mark = r.b
	return c
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail(errTruncated)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail(errTruncated)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// u64 reads an unsigned or signed LEB128 number (up to 10 bytes), returning its low bits.
func (r *reader) u64() uint64 {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 number too long"))
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.u64()) }

func (r *reader) limits() {
	switch r.byte() {
	case 0x00, 0x02, 0x04, 0x06:
		r.u64()
	case 0x01, 0x03, 0x05, 0x07:
		r.u64()
		r.u64()
	default:
		r.fail(errUninstrumentable)
	}
}

func (r *reader) blockType() {
	if len(r.b) > 0 {
		switch r.b[0] {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			r.b = r.b[1:]
			return
		}
	}
	r.u64() // s33 type index
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
