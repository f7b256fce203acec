package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// Tensor is a tensor to write: its name, GGML dimensions (innermost first),
// type, and encoded data.
type Tensor struct {
	Name string
	Dims []uint64
	Type TensorType
	Data []byte
}

// Write encodes a version 3 GGUF file with the metadata in kv (in the order
// given) and the tensors (in the order given), aligned to general.alignment
// when kv sets it, else to DefaultAlignment. The output is deterministic.
func Write(kv []KV, tensors []Tensor) ([]byte, error) {
	align := uint64(DefaultAlignment)
	var b []byte
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint32(b, 3)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(tensors)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(kv)))
	for _, e := range kv {
		if e.Key == "general.alignment" {
			a, ok := e.Value.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("gguf: general.alignment must be a uint32 power of two")
			}
			align = uint64(a)
		}
		b = appendString(b, e.Key)
		b = binary.LittleEndian.AppendUint32(b, uint32(e.Type))
		var err error
		if b, err = appendValue(b, e.Type, e.Value); err != nil {
			return nil, fmt.Errorf("gguf: key %s: %w", e.Key, err)
		}
	}
	off := uint64(0)
	offsets := make([]uint64, len(tensors))
	for i, t := range tensors {
		elems, bytes, ok := t.Type.BlockSize()
		if !ok {
			return nil, fmt.Errorf("gguf: tensor %s: unsupported type %d", t.Name, t.Type)
		}
		n := uint64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if len(t.Dims) == 0 || t.Dims[0]%uint64(elems) != 0 || n/uint64(elems)*uint64(bytes) != uint64(len(t.Data)) {
			return nil, fmt.Errorf("gguf: tensor %s: %d bytes of data do not match dims %v of %s", t.Name, len(t.Data), t.Dims, t.Type)
		}
		b = appendString(b, t.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.Type))
		b = binary.LittleEndian.AppendUint64(b, off)
		offsets[i] = off
		off = alignUp(off+uint64(len(t.Data)), align)
	}
	pad := func() {
		for uint64(len(b))%align != 0 {
			b = append(b, 0)
		}
	}
	pad()
	start := uint64(len(b))
	for i, t := range tensors {
		for uint64(len(b)) < start+offsets[i] {
			b = append(b, 0)
		}
		b = append(b, t.Data...)
	}
	if len(tensors) > 0 {
		pad()
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// TypeOf reports the GGUF value type for a Go value as Write accepts it.
func TypeOf(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64, []any:
		return TypeArray, true
	}
	return 0, false
}

// elemType reports the element type of an array value.
func elemType(v any) (ValueType, int, bool) {
	switch s := v.(type) {
	case []uint8:
		return TypeUint8, len(s), true
	case []int8:
		return TypeInt8, len(s), true
	case []uint16:
		return TypeUint16, len(s), true
	case []int16:
		return TypeInt16, len(s), true
	case []uint32:
		return TypeUint32, len(s), true
	case []int32:
		return TypeInt32, len(s), true
	case []float32:
		return TypeFloat32, len(s), true
	case []bool:
		return TypeBool, len(s), true
	case []string:
		return TypeString, len(s), true
	case []uint64:
		return TypeUint64, len(s), true
	case []int64:
		return TypeInt64, len(s), true
	case []float64:
		return TypeFloat64, len(s), true
	case []any:
		return TypeArray, len(s), true
	}
	return 0, 0, false
}

func appendValue(b []byte, t ValueType, v any) ([]byte, error) {
	if vt, ok := TypeOf(v); !ok || vt != t {
		return nil, fmt.Errorf("value %T does not match type %d", v, t)
	}
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		return append(b, x), nil
	case int8:
		return append(b, byte(x)), nil
	case uint16:
		return le.AppendUint16(b, x), nil
	case int16:
		return le.AppendUint16(b, uint16(x)), nil
	case uint32:
		return le.AppendUint32(b, x), nil
	case int32:
		return le.AppendUint32(b, uint32(x)), nil
	case float32:
		return le.AppendUint32(b, math.Float32bits(x)), nil
	case bool:
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case string:
		return appendString(b, x), nil
	case uint64:
		return le.AppendUint64(b, x), nil
	case int64:
		return le.AppendUint64(b, uint64(x)), nil
	case float64:
		return le.AppendUint64(b, math.Float64bits(x)), nil
	}
	et, n, _ := elemType(v)
	if et == TypeArray {
		// Arrays of arrays: every element must itself be an array.
		b = le.AppendUint32(b, uint32(TypeArray))
		b = le.AppendUint64(b, uint64(n))
		for _, e := range v.([]any) {
			inner, _, ok := elemType(e)
			if !ok {
				return nil, fmt.Errorf("array of arrays holds %T", e)
			}
			b = le.AppendUint32(b, uint32(inner))
			var err error
			if b, err = appendArrayBody(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	b = le.AppendUint32(b, uint32(et))
	return appendArrayBody(b, v)
}

func appendArrayBody(b []byte, v any) ([]byte, error) {
	et, n, _ := elemType(v)
	if et == TypeArray {
		return nil, fmt.Errorf("arrays nested too deeply")
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	var err error
	each := func(i int, e any) {
		if err == nil {
			b, err = appendValue(b, et, e)
		}
	}
	switch s := v.(type) {
	case []uint8:
		return append(b, s...), nil
	case []int8:
		for i, e := range s {
			each(i, e)
		}
	case []uint16:
		for i, e := range s {
			each(i, e)
		}
	case []int16:
		for i, e := range s {
			each(i, e)
		}
	case []uint32:
		for i, e := range s {
			each(i, e)
		}
	case []int32:
		for i, e := range s {
			each(i, e)
		}
	case []float32:
		for i, e := range s {
			each(i, e)
		}
	case []bool:
		for i, e := range s {
			each(i, e)
		}
	case []string:
		for i, e := range s {
			each(i, e)
		}
	case []uint64:
		for i, e := range s {
			each(i, e)
		}
	case []int64:
		for i, e := range s {
			each(i, e)
		}
	case []float64:
		for i, e := range s {
			each(i, e)
		}
	}
	return b, err
}

// SortedKeys returns the metadata keys of f in sorted order.
func (f *File) SortedKeys() []string {
	keys := make([]string, 0, len(f.KV))
	for _, kv := range f.KV {
		keys = append(keys, kv.Key)
	}
	sort.Strings(keys)
	return keys
}
