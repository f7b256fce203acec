package workerabi

import (
	"encoding/binary"
	"errors"
	"math"
)

// Encoder appends ABI values to B. The zero value is an empty encoder; set B to a reused
// buffer (length zero) to encode without allocating.
type Encoder struct {
	// B is the encoded bytes so far.
	B []byte
}

// U8 appends one byte.
func (e *Encoder) U8(v uint8) { e.B = append(e.B, v) }

// U32 appends a little-endian uint32.
func (e *Encoder) U32(v uint32) { e.B = binary.LittleEndian.AppendUint32(e.B, v) }

// I64 appends a little-endian int64 (two's complement).
func (e *Encoder) I64(v int64) { e.B = binary.LittleEndian.AppendUint64(e.B, uint64(v)) }

// Str appends a byte string: its u32 length, then its bytes.
func (e *Encoder) Str(s string) {
	e.U32(uint32(len(s)))
	e.B = append(e.B, s...)
}

// Bytes appends a byte string like Str.
func (e *Encoder) Bytes(p []byte) {
	e.U32(uint32(len(p)))
	e.B = append(e.B, p...)
}

// Bool appends 1 for true and 0 for false.
func (e *Encoder) Bool(v bool) {
	if v {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// ErrTruncated is the error of a Decoder that ran out of input.
var ErrTruncated = errors.New("truncated ABI value")

// Decoder reads ABI values from B. The first failure sets Err to ErrTruncated and sticks:
// later reads return zero values, so a caller checks Err once after a sequence of reads.
type Decoder struct {
	// B is the input not read yet.
	B []byte
	// Err is nil, or ErrTruncated once a read ran past the end of B.
	Err error
}

func (d *Decoder) need(n int) bool {
	if d.Err != nil {
		return false
	}
	if n < 0 || len(d.B) < n {
		d.Err = ErrTruncated
		return false
	}
	return true
}

// U8 reads one byte.
func (d *Decoder) U8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// U32 reads a little-endian uint32.
func (d *Decoder) U32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.B)
	d.B = d.B[4:]
	return v
}

// I64 reads a little-endian int64.
func (d *Decoder) I64() int64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.B)
	d.B = d.B[8:]
	return int64(v)
}

// F64 reads a float64 sent as the little-endian bits of an int64.
func (d *Decoder) F64() float64 { return math.Float64frombits(uint64(d.I64())) }

// Raw returns the next byte string without copying: it aliases the input (with its capacity
// capped at its length) and is nil on failure.
func (d *Decoder) Raw() []byte {
	n := int(d.U32())
	if !d.need(n) {
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// Str returns a copy of the next byte string.
func (d *Decoder) Str() string { return string(d.Raw()) }

// Bytes returns a copy of the next byte string; an empty string gives a non-nil empty slice,
// a failure nil.
func (d *Decoder) Bytes() []byte {
	v := d.Raw()
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}

// Count reads an element count and checks it against the bytes left, each element taking at
// least min bytes, so that a hostile count cannot make the reader allocate. It returns 0 on
// failure.
func (d *Decoder) Count(min int) int {
	n := d.U32()
	if d.Err == nil && uint64(n)*uint64(min) > uint64(len(d.B)) {
		d.Err = ErrTruncated
		return 0
	}
	return int(n)
}
