package worker

import (
	"encoding/binary"
	"errors"
	"math"
)

// Host operation codes and statuses of the ABI (docs/workers-abi.md).
const (
	opReqHead       = 1
	opReqBody       = 2
	opRespHead      = 3
	opRespBody      = 4
	opRespEnd       = 5
	opLog           = 6
	opEnv           = 7
	opKVGet         = 16
	opKVPut         = 17
	opKVDelete      = 18
	opKVList        = 19
	opDOIDFromName  = 32
	opDONewID       = 33
	opDOIDFromStr   = 34
	opDOFetch       = 35
	opDOContext     = 36
	opStGet         = 48
	opStPut         = 49
	opStDelete      = 50
	opStList        = 51
	opStDeleteAll   = 52
	opStTxnBegin    = 53
	opStTxnCommit   = 54
	opStTxnRollback = 55
	opStSQL         = 56
	opAlarmGet      = 57
	opAlarmSet      = 58
	opAlarmDelete   = 59
	opFetch         = 64

	statusOK          = 0
	statusInternal    = 1
	statusInvalid     = 2
	statusLimit       = 3
	statusUnavailable = 4

	kindFetch   = 0
	kindDOFetch = 1
	kindDOAlarm = 2

	// Results of verge_handle.
	rcOK          = 0
	rcFailed      = 1
	rcAlarmFailed = 2
)

// enc appends ABI values to a reusable buffer.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.LittleEndian.AppendUint32(e.b, v) }
func (e *enc) i64(v int64)  { e.b = binary.LittleEndian.AppendUint64(e.b, uint64(v)) }
func (e *enc) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(e.b, s...)
}
func (e *enc) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}
func (e *enc) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

var errShort = errors.New("truncated argument")

// dec reads ABI values from guest memory. Slices returned by raw alias the input.
type dec struct {
	b   []byte
	err error
}

func (d *dec) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b) < n {
		d.err = errShort
		return false
	}
	return true
}

func (d *dec) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dec) i64() int64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return int64(v)
}

func (d *dec) f64() float64 { return math.Float64frombits(uint64(d.i64())) }

// raw returns the next byte string without copying.
func (d *dec) raw() []byte {
	n := int(d.u32())
	if !d.need(n) {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str returns a copy of the next byte string.
func (d *dec) str() string { return string(d.raw()) }

// bytes returns a copy of the next byte string.
func (d *dec) bytes() []byte { return append([]byte{}, d.raw()...) }

// count reads an element count and checks it against the bytes left (each element takes at
// least min bytes), so a hostile count cannot make the host allocate.
func (d *dec) count(min int) int {
	n := int(d.u32())
	if d.err == nil && n*min > len(d.b) {
		d.err = errShort
		return 0
	}
	return n
}
