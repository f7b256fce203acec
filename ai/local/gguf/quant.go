package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// TensorType is a GGML tensor element type.
type TensorType uint32

// Tensor types this package can size and decode. The numbers are GGML's.
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q4_0 TensorType = 2
	Q4_1 TensorType = 3
	Q8_0 TensorType = 8
	Q4_K TensorType = 12
	Q5_K TensorType = 13
	Q6_K TensorType = 14
	BF16 TensorType = 30
)

type traits struct {
	name  string
	block int // elements per block
	bytes int // bytes per block
}

var typeTraits = map[TensorType]traits{
	F32:  {"F32", 1, 4},
	F16:  {"F16", 1, 2},
	BF16: {"BF16", 1, 2},
	Q4_0: {"Q4_0", 32, 18},
	Q4_1: {"Q4_1", 32, 20},
	Q8_0: {"Q8_0", 32, 34},
	Q4_K: {"Q4_K", 256, 144},
	Q5_K: {"Q5_K", 256, 176},
	Q6_K: {"Q6_K", 256, 210},
}

func (t TensorType) String() string {
	if tt, ok := typeTraits[t]; ok {
		return tt.name
	}
	return fmt.Sprintf("type%d", uint32(t))
}

// BlockSize reports how many elements one block of type t holds and how many
// bytes it takes; ok is false for a type this package cannot decode.
func (t TensorType) BlockSize() (elems, bytes int, ok bool) {
	tt, ok := typeTraits[t]
	return tt.block, tt.bytes, ok
}

// RowBytes reports the bytes of a row of n elements of type t.
func (t TensorType) RowBytes(n int) int {
	tt := typeTraits[t]
	if tt.block == 0 {
		return 0
	}
	return n / tt.block * tt.bytes
}

// HalfToFloat converts an IEEE 754 binary16 value to float32.
func HalfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// FloatToHalf converts a float32 to binary16, rounding to nearest even.
func FloatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is the right answer
	}
	return sign | uint16(h)
}

// DequantizeRow decodes n elements of type t from src into dst[:n]. src
// must hold at least t.RowBytes(n) bytes and n must be a multiple of the
// block size.
func DequantizeRow(t TensorType, src []byte, dst []float32) {
	n := len(dst)
	switch t {
	case F32:
		for i := range n {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range n {
			dst[i] = HalfToFloat(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range n {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	case Q8_0:
		for b := 0; b < n/32; b++ {
			blk := src[b*34 : b*34+34]
			d := HalfToFloat(binary.LittleEndian.Uint16(blk))
			out := dst[b*32 : b*32+32]
			for i := range out {
				out[i] = d * float32(int8(blk[2+i]))
			}
		}
	case Q4_0:
		for b := 0; b < n/32; b++ {
			blk := src[b*18 : b*18+18]
			d := HalfToFloat(binary.LittleEndian.Uint16(blk))
			out := dst[b*32 : b*32+32]
			for i := range 16 {
				q := blk[2+i]
				out[i] = d * float32(int(q&0xf)-8)
				out[i+16] = d * float32(int(q>>4)-8)
			}
		}
	case Q4_1:
		for b := 0; b < n/32; b++ {
			blk := src[b*20 : b*20+20]
			d := HalfToFloat(binary.LittleEndian.Uint16(blk))
			m := HalfToFloat(binary.LittleEndian.Uint16(blk[2:]))
			out := dst[b*32 : b*32+32]
			for i := range 16 {
				q := blk[4+i]
				out[i] = d*float32(q&0xf) + m
				out[i+16] = d*float32(q>>4) + m
			}
		}
	case Q4_K:
		for b := 0; b < n/256; b++ {
			dequantQ4K(src[b*144:b*144+144], dst[b*256:b*256+256])
		}
	case Q5_K:
		for b := 0; b < n/256; b++ {
			dequantQ5K(src[b*176:b*176+176], dst[b*256:b*256+256])
		}
	case Q6_K:
		for b := 0; b < n/256; b++ {
			dequantQ6K(src[b*210:b*210+210], dst[b*256:b*256+256])
		}
	default:
		panic("gguf: DequantizeRow of unsupported type " + t.String())
	}
}

// ScaleMinK4 unpacks the j-th (0 to 7) 6-bit sub-block scale and minimum
// from the twelve packed bytes q of a Q4_K or Q5_K block.
func ScaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// dequantQ4K decodes one 256-element Q4_K block: f16 scale, f16 minimum
// scale, twelve bytes of packed 6-bit sub-block scales and minimums, and
// 128 bytes of 4-bit quants, in eight sub-blocks of 32.
func dequantQ4K(blk []byte, out []float32) {
	d := HalfToFloat(binary.LittleEndian.Uint16(blk))
	dmin := HalfToFloat(binary.LittleEndian.Uint16(blk[2:]))
	scales := blk[4:16]
	q := blk[16:144]
	is := 0
	for j := 0; j < 256; j += 64 {
		sc, m := ScaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = ScaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := range 32 {
			out[j+l] = d1*float32(q[l]&0xf) - m1
			out[j+32+l] = d2*float32(q[l]>>4) - m2
		}
		q = q[32:]
		is += 2
	}
}

// dequantQ5K decodes one 256-element Q5_K block: as Q4_K, with a fifth
// bit per element in 32 bytes of high bits (bit 2c of byte l for the low
// half of chunk c, bit 2c+1 for the high half).
func dequantQ5K(blk []byte, out []float32) {
	d := HalfToFloat(binary.LittleEndian.Uint16(blk))
	dmin := HalfToFloat(binary.LittleEndian.Uint16(blk[2:]))
	scales := blk[4:16]
	qh := blk[16:48]
	ql := blk[48:176]
	is := 0
	var u1, u2 byte = 1, 2
	for j := 0; j < 256; j += 64 {
		sc, m := ScaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = ScaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := range 32 {
			lo, hi := ql[l]&0xf, ql[l]>>4
			if qh[l]&u1 != 0 {
				lo += 16
			}
			if qh[l]&u2 != 0 {
				hi += 16
			}
			out[j+l] = d1*float32(lo) - m1
			out[j+32+l] = d2*float32(hi) - m2
		}
		ql = ql[32:]
		is += 2
		u1 <<= 2
		u2 <<= 2
	}
}

// dequantQ6K decodes one 256-element Q6_K block: 128 bytes of low four
// bits, 64 bytes of high two bits, sixteen int8 sub-block scales and an f16
// scale.
func dequantQ6K(blk []byte, out []float32) {
	ql := blk[0:128]
	qh := blk[128:192]
	sc := blk[192:208]
	d := HalfToFloat(binary.LittleEndian.Uint16(blk[208:]))
	for n := 0; n < 256; n += 128 {
		for l := range 32 {
			is := l / 16
			q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
			q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
			q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
			q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
			out[n+l] = d * float32(int8(sc[is])) * float32(q1)
			out[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			out[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			out[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}

// QuantizeQ8_0 encodes src (a multiple of 32 elements) as Q8_0 blocks: per
// block an f16 scale d = max|x|/127 and 32 int8 values round(x/d).
func QuantizeQ8_0(src []float32) []byte {
	out := make([]byte, 0, len(src)/32*34)
	for b := 0; b < len(src)/32; b++ {
		blk := src[b*32 : b*32+32]
		var amax float32
		for _, x := range blk {
			amax = max(amax, float32(math.Abs(float64(x))))
		}
		d := amax / 127
		id := float32(0)
		if d != 0 {
			id = 1 / d
		}
		out = binary.LittleEndian.AppendUint16(out, FloatToHalf(d))
		for _, x := range blk {
			out = append(out, byte(int8(math.Round(float64(x*id)))))
		}
	}
	return out
}

// EncodeF16 encodes src as little-endian binary16 values.
func EncodeF16(src []float32) []byte {
	out := make([]byte, 0, 2*len(src))
	for _, x := range src {
		out = binary.LittleEndian.AppendUint16(out, FloatToHalf(x))
	}
	return out
}

// EncodeF32 encodes src as little-endian float32 values.
func EncodeF32(src []float32) []byte {
	out := make([]byte, 0, 4*len(src))
	for _, x := range src {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}
