package sdk

import (
	"encoding/binary"
	"errors"
	"math"
)

// encoder builds an ABI argument: little-endian integers and length-prefixed byte strings, as
// docs/workers-abi.md describes.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *encoder) i64(v int64)  { e.b = binary.LittleEndian.AppendUint64(e.b, uint64(v)) }
func (e *encoder) str(s string) { e.u32(uint32(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// header encodes a count and name/value pairs.
func (e *encoder) header(h Header) {
	e.u32(uint32(len(h.fields)))
	for _, f := range h.fields {
		e.str(f.Name)
		e.str(f.Value)
	}
}

var errShort = errors.New("verge sdk: truncated host result")

// decoder reads an ABI result. The first error sticks; later reads return zero values.
type decoder struct {
	b     []byte
	err   error
	total int // len of the input, for span
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < n {
		d.err = errShort
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) i64() int64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return int64(v)
}

func (d *decoder) f64() float64 { return math.Float64frombits(uint64(d.i64())) }

// bytes returns a copy of the next byte string.
func (d *decoder) bytes() []byte {
	n := int(d.u32())
	if !d.need(n) {
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

// span returns the bounds of the next byte string within the input (total bytes long), for
// taking substrings of one copy of the input.
func (d *decoder) span() (int, int) {
	n := int(d.u32())
	if !d.need(n) {
		return 0, 0
	}
	start := d.total - len(d.b)
	d.b = d.b[n:]
	return start, start + n
}

func (d *decoder) str() string {
	n := int(d.u32())
	if !d.need(n) {
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) header() Header {
	n := int(d.u32())
	if n > len(d.b)/8 {
		d.err = errShort
		return Header{}
	}
	h := Header{fields: make([]Field, 0, n)}
	for range n {
		name := d.str()
		h.fields = append(h.fields, Field{Name: name, Value: d.str()})
	}
	return h
}
