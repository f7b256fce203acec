// Package gguf reads and writes GGUF files, the single-file model format of
// llama.cpp and the GGML library: a header of typed key/value metadata, a table
// of tensor descriptions, and the aligned tensor data.
//
// The reader treats its input as hostile. Every count, length, dimension and
// offset is checked against the bytes actually present before anything is
// allocated, so a crafted file cannot make Parse allocate more than a small
// multiple of the file's own size, read outside it, or loop for long. See
// Limits for the fixed caps.
//
// The format is described in the GGML repository's docs/gguf.md; versions 2
// and 3 (64-bit counts) are read, version 3 is written.
package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the tensor data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types, as numbered by the format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// Limits bound what Parse accepts. The zero value of a field means the
// default given in its comment.
type Limits struct {
	// MaxKV is the most metadata entries; default 65536.
	MaxKV int
	// MaxTensors is the most tensors; default 65536.
	MaxTensors int
	// MaxString is the longest string in bytes; default 16 MiB.
	MaxString int
	// MaxArray is the most elements in one array; default 16 Mi.
	MaxArray int
	// MaxDims is the most dimensions a tensor may have; default 4 (GGML's limit).
	MaxDims int
}

func (l Limits) withDefaults() Limits {
	if l.MaxKV <= 0 {
		l.MaxKV = 1 << 16
	}
	if l.MaxTensors <= 0 {
		l.MaxTensors = 1 << 16
	}
	if l.MaxString <= 0 {
		l.MaxString = 16 << 20
	}
	if l.MaxArray <= 0 {
		l.MaxArray = 16 << 20
	}
	if l.MaxDims <= 0 {
		l.MaxDims = 4
	}
	return l
}

// KV is one metadata entry. Value holds a Go value of the type matching
// Type: uint8, int8, uint16, int16, uint32, int32, float32, bool, string,
// uint64, int64, float64, or for arrays a typed slice of one of these
// ([]string, []float32, []int32, ...) or []any for arrays of arrays.
type KV struct {
	Key   string
	Type  ValueType
	Value any
}

// TensorInfo describes one tensor. Dims are in GGML order: Dims[0] is the
// innermost (contiguous) dimension, so a matrix of R rows of C columns has
// Dims = [C, R].
type TensorInfo struct {
	Name   string
	Dims   []uint64
	Type   TensorType
	Offset uint64 // relative to the start of the data section
	Size   uint64 // bytes, computed from Dims and Type
}

// Elements reports the number of elements in the tensor.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file. Tensor data is not copied: TensorData returns
// slices of the buffer given to Parse.
type File struct {
	Version   uint32
	KV        []KV
	Tensors   []TensorInfo
	Alignment uint64
	// DataOffset is where the tensor data section starts in the file.
	DataOffset uint64

	buf     []byte
	kvIndex map[string]int
	tIndex  map[string]int
}

// Error is returned for a malformed file; Offset is where the problem was found.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("gguf: at byte %d: %s", e.Offset, e.Msg) }

// ErrNotGGUF is returned when the input does not start with the GGUF magic.
var ErrNotGGUF = errors.New("gguf: not a GGUF file (bad magic)")

type reader struct {
	b   []byte
	off int
	lim Limits
}

func (r *reader) fail(format string, args ...any) error {
	return &Error{Offset: r.off, Msg: fmt.Sprintf(format, args...)}
}

func (r *reader) need(n int) error {
	if n < 0 || len(r.b)-r.off < n {
		return r.fail("truncated: need %d bytes, have %d", n, len(r.b)-r.off)
	}
	return nil
}

func (r *reader) u8() (uint8, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	v := r.b[r.off]
	r.off++
	return v, nil
}

func (r *reader) u16() (uint16, error) {
	if err := r.need(2); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, nil
}

func (r *reader) u32() (uint32, error) {
	if err := r.need(4); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64() (uint64, error) {
	if err := r.need(8); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

// count reads a 64-bit count and checks it against max and against the
// bytes left, given that each element takes at least minSize bytes.
func (r *reader) count(what string, max, minSize int) (int, error) {
	n, err := r.u64()
	if err != nil {
		return 0, err
	}
	if n > uint64(max) {
		return 0, r.fail("%s count %d exceeds limit %d", what, n, max)
	}
	if minSize > 0 && n > uint64((len(r.b)-r.off)/minSize) {
		return 0, r.fail("%s count %d larger than the rest of the file", what, n)
	}
	return int(n), nil
}

func (r *reader) str() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(r.lim.MaxString) {
		return "", r.fail("string length %d exceeds limit %d", n, r.lim.MaxString)
	}
	if err := r.need(int(n)); err != nil {
		return "", err
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

// minValueSize is the fewest bytes a value of type t occupies in the file.
func minValueSize(t ValueType) int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64, TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return 1
}

func (r *reader) value(t ValueType, depth int) (any, error) {
	switch t {
	case TypeUint8:
		return r.u8()
	case TypeInt8:
		v, err := r.u8()
		return int8(v), err
	case TypeUint16:
		return r.u16()
	case TypeInt16:
		v, err := r.u16()
		return int16(v), err
	case TypeUint32:
		return r.u32()
	case TypeInt32:
		v, err := r.u32()
		return int32(v), err
	case TypeFloat32:
		v, err := r.u32()
		return math.Float32frombits(v), err
	case TypeBool:
		v, err := r.u8()
		if err == nil && v > 1 {
			return nil, r.fail("bool value %d", v)
		}
		return v == 1, err
	case TypeString:
		return r.str()
	case TypeUint64:
		return r.u64()
	case TypeInt64:
		v, err := r.u64()
		return int64(v), err
	case TypeFloat64:
		v, err := r.u64()
		return math.Float64frombits(v), err
	case TypeArray:
		if depth >= 2 {
			return nil, r.fail("arrays nested too deeply")
		}
		et, err := r.u32()
		if err != nil {
			return nil, err
		}
		return r.array(ValueType(et), depth+1)
	}
	return nil, r.fail("unknown value type %d", t)
}

func (r *reader) array(et ValueType, depth int) (any, error) {
	if et > TypeFloat64 {
		return nil, r.fail("unknown array element type %d", et)
	}
	n, err := r.count("array", r.lim.MaxArray, minValueSize(et))
	if err != nil {
		return nil, err
	}
	switch et {
	case TypeUint8:
		return readSlice(r, n, r.u8)
	case TypeInt8:
		return readSlice(r, n, func() (int8, error) { v, err := r.u8(); return int8(v), err })
	case TypeUint16:
		return readSlice(r, n, r.u16)
	case TypeInt16:
		return readSlice(r, n, func() (int16, error) { v, err := r.u16(); return int16(v), err })
	case TypeUint32:
		return readSlice(r, n, r.u32)
	case TypeInt32:
		return readSlice(r, n, func() (int32, error) { v, err := r.u32(); return int32(v), err })
	case TypeFloat32:
		return readSlice(r, n, func() (float32, error) { v, err := r.u32(); return math.Float32frombits(v), err })
	case TypeBool:
		return readSlice(r, n, func() (bool, error) {
			v, err := r.value(TypeBool, depth)
			if err != nil {
				return false, err
			}
			return v.(bool), nil
		})
	case TypeString:
		return readSlice(r, n, r.str)
	case TypeUint64:
		return readSlice(r, n, r.u64)
	case TypeInt64:
		return readSlice(r, n, func() (int64, error) { v, err := r.u64(); return int64(v), err })
	case TypeFloat64:
		return readSlice(r, n, func() (float64, error) { v, err := r.u64(); return math.Float64frombits(v), err })
	case TypeArray:
		return readSlice(r, n, func() (any, error) { return r.value(TypeArray, depth) })
	}
	return nil, r.fail("unknown array element type %d", et)
}

func readSlice[T any](r *reader, n int, read func() (T, error)) ([]T, error) {
	s := make([]T, n)
	for i := range s {
		v, err := read()
		if err != nil {
			return nil, err
		}
		s[i] = v
	}
	return s, nil
}

// Parse parses a GGUF file held in memory with the default Limits.
func Parse(b []byte) (*File, error) { return ParseLimits(b, Limits{}) }

// ParseLimits parses a GGUF file held in memory. It checks that every
// tensor lies inside b, is aligned, and does not overlap the header; the
// returned File refers to b, which must not change afterwards.
func ParseLimits(b []byte, lim Limits) (*File, error) {
	r := &reader{b: b, lim: lim.withDefaults()}
	if len(b) < 4 || string(b[:4]) != Magic {
		return nil, ErrNotGGUF
	}
	r.off = 4
	f := &File{buf: b, kvIndex: map[string]int{}, tIndex: map[string]int{}}
	var err error
	if f.Version, err = r.u32(); err != nil {
		return nil, err
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, r.fail("unsupported GGUF version %d (want 2 or 3)", f.Version)
	}
	nt, err := r.count("tensor", r.lim.MaxTensors, 8+4+8+4+8)
	if err != nil {
		return nil, err
	}
	nkv, err := r.count("metadata", r.lim.MaxKV, 8+4+1)
	if err != nil {
		return nil, err
	}
	f.KV = make([]KV, 0, nkv)
	for range nkv {
		key, err := r.str()
		if err != nil {
			return nil, err
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, r.fail("duplicate metadata key %q", key)
		}
		t, err := r.u32()
		if err != nil {
			return nil, err
		}
		v, err := r.value(ValueType(t), 0)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Type: ValueType(t), Value: v})
	}
	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := v.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 || a > 1<<16 {
			return nil, r.fail("general.alignment %v is not a power of two up to 65536", v)
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, nt)
	for range nt {
		name, err := r.str()
		if err != nil {
			return nil, err
		}
		if _, dup := f.tIndex[name]; dup {
			return nil, r.fail("duplicate tensor %q", name)
		}
		nd, err := r.u32()
		if err != nil {
			return nil, err
		}
		if nd == 0 || int(nd) > r.lim.MaxDims {
			return nil, r.fail("tensor %q has %d dimensions (want 1 to %d)", name, nd, r.lim.MaxDims)
		}
		ti := TensorInfo{Name: name, Dims: make([]uint64, nd)}
		elems := uint64(1)
		for i := range ti.Dims {
			d, err := r.u64()
			if err != nil {
				return nil, err
			}
			if d == 0 || d > 1<<40 {
				return nil, r.fail("tensor %q dimension %d is %d", name, i, d)
			}
			hi, lo := mulOverflow(elems, d)
			if hi || lo > 1<<42 {
				return nil, r.fail("tensor %q has too many elements", name)
			}
			elems = lo
			ti.Dims[i] = d
		}
		typ, err := r.u32()
		if err != nil {
			return nil, err
		}
		ti.Type = TensorType(typ)
		tt, ok := typeTraits[ti.Type]
		if !ok {
			return nil, r.fail("tensor %q has unsupported type %d", name, typ)
		}
		if ti.Dims[0]%uint64(tt.block) != 0 {
			return nil, r.fail("tensor %q row of %d is not a multiple of the %s block size %d", name, ti.Dims[0], ti.Type, tt.block)
		}
		ti.Size = elems / uint64(tt.block) * uint64(tt.bytes)
		if ti.Offset, err = r.u64(); err != nil {
			return nil, err
		}
		if ti.Offset%f.Alignment != 0 {
			return nil, r.fail("tensor %q offset %d is not aligned to %d", name, ti.Offset, f.Alignment)
		}
		f.tIndex[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	f.DataOffset = alignUp(uint64(r.off), f.Alignment)
	if f.DataOffset > uint64(len(b)) {
		if nt > 0 {
			return nil, r.fail("data section starts at %d, past the end of the file (%d bytes)", f.DataOffset, len(b))
		}
		f.DataOffset = uint64(len(b))
	}
	dataLen := uint64(len(b)) - f.DataOffset
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset > dataLen || t.Size > dataLen-t.Offset {
			return nil, &Error{Offset: int(f.DataOffset), Msg: fmt.Sprintf("tensor %q (%d bytes at %d) extends past the end of the file", t.Name, t.Size, t.Offset)}
		}
	}
	return f, nil
}

func mulOverflow(a, b uint64) (bool, uint64) {
	if a != 0 && b > math.MaxUint64/a {
		return true, 0
	}
	return false, a * b
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// Get returns the value stored under key.
func (f *File) Get(key string) (any, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return nil, false
	}
	return f.KV[i].Value, true
}

// String returns the string stored under key.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	s, ok2 := v.(string)
	return s, ok && ok2
}

// Uint returns the integer stored under key, whatever its width and
// signedness; negative values are reported as absent.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Float returns the floating-point number stored under key.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), ok
	case float64:
		return x, ok
	}
	return 0, false
}

// Bool returns the boolean stored under key.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Get(key)
	b, ok2 := v.(bool)
	return b, ok && ok2
}

// Tensor returns the description of the named tensor.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData returns the bytes of the named tensor, a slice of the parsed buffer.
func (f *File) TensorData(t *TensorInfo) []byte {
	start := f.DataOffset + t.Offset
	return f.buf[start : start+t.Size : start+t.Size]
}
