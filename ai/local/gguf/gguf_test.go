package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
)

func sample(t testing.TB) []byte {
	t.Helper()
	kv := []KV{
		{Key: "general.architecture", Type: TypeString, Value: "llama"},
		{Key: "u8", Type: TypeUint8, Value: uint8(7)},
		{Key: "i8", Type: TypeInt8, Value: int8(-7)},
		{Key: "u16", Type: TypeUint16, Value: uint16(700)},
		{Key: "i16", Type: TypeInt16, Value: int16(-700)},
		{Key: "u32", Type: TypeUint32, Value: uint32(70000)},
		{Key: "i32", Type: TypeInt32, Value: int32(-70000)},
		{Key: "f32", Type: TypeFloat32, Value: float32(1.5)},
		{Key: "bool", Type: TypeBool, Value: true},
		{Key: "u64", Type: TypeUint64, Value: uint64(1 << 40)},
		{Key: "i64", Type: TypeInt64, Value: int64(-1 << 40)},
		{Key: "f64", Type: TypeFloat64, Value: 2.25},
		{Key: "strings", Type: TypeArray, Value: []string{"a", "", "ünï"}},
		{Key: "floats", Type: TypeArray, Value: []float32{1, -2, 3.5}},
		{Key: "ints", Type: TypeArray, Value: []int32{1, -2}},
		{Key: "bytes", Type: TypeArray, Value: []uint8{1, 2, 3}},
		{Key: "bools", Type: TypeArray, Value: []bool{true, false}},
		{Key: "nested", Type: TypeArray, Value: []any{[]string{"x"}, []int32{4, 5}}},
	}
	tensors := []Tensor{
		{Name: "a", Dims: []uint64{4}, Type: F32, Data: EncodeF32([]float32{1, 2, 3, 4})},
		{Name: "b", Dims: []uint64{32, 2}, Type: Q8_0, Data: QuantizeQ8_0(make([]float32, 64))},
		{Name: "c", Dims: []uint64{3}, Type: F16, Data: EncodeF16([]float32{0.5, -1, 2})},
	}
	b, err := Write(kv, tensors)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	b := sample(t)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || len(f.KV) != 18 || len(f.Tensors) != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 {
		t.Fatalf("got version %d, %d kv, %d tensors, alignment %d, data at %d", f.Version, len(f.KV), len(f.Tensors), f.Alignment, f.DataOffset)
	}
	for key, want := range map[string]any{
		"u8": uint8(7), "i8": int8(-7), "u16": uint16(700), "i16": int16(-700), "u32": uint32(70000),
		"i32": int32(-70000), "f32": float32(1.5), "bool": true, "u64": uint64(1 << 40), "i64": int64(-1 << 40),
		"f64": 2.25, "strings": []string{"a", "", "ünï"}, "floats": []float32{1, -2, 3.5}, "ints": []int32{1, -2},
		"bytes": []uint8{1, 2, 3}, "bools": []bool{true, false}, "nested": []any{[]string{"x"}, []int32{4, 5}},
	} {
		got, ok := f.Get(key)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", key, got, want)
		}
	}
	if n, ok := f.Uint("i32"); ok {
		t.Errorf("Uint of a negative value: %d", n)
	}
	if n, _ := f.Uint("u16"); n != 700 {
		t.Errorf("Uint(u16) = %d", n)
	}
	ta, _ := f.Tensor("a")
	got := make([]float32, 4)
	DequantizeRow(F32, f.TensorData(ta), got)
	if !reflect.DeepEqual(got, []float32{1, 2, 3, 4}) {
		t.Errorf("tensor a = %v", got)
	}
	tc, _ := f.Tensor("c")
	got = got[:3]
	DequantizeRow(F16, f.TensorData(tc), got)
	if !reflect.DeepEqual(got, []float32{0.5, -1, 2}) {
		t.Errorf("tensor c = %v", got)
	}
	for _, ti := range f.Tensors {
		if (f.DataOffset+ti.Offset)%32 != 0 {
			t.Errorf("tensor %s at %d is not aligned", ti.Name, f.DataOffset+ti.Offset)
		}
	}
	// Writing what was read gives the same bytes.
	var ts []Tensor
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		ts = append(ts, Tensor{Name: ti.Name, Dims: ti.Dims, Type: ti.Type, Data: f.TensorData(ti)})
	}
	b2, err := Write(f.KV, ts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatal("rewrite differs")
	}
}

// TestTruncated checks that every prefix of a valid file is rejected with
// an error, never a panic.
func TestTruncated(t *testing.T) {
	b := sample(t)
	f, _ := Parse(b)
	last := f.Tensors[len(f.Tensors)-1]
	end := int(f.DataOffset + last.Offset + last.Size)
	for n := range end {
		if _, err := Parse(b[:n]); err == nil {
			t.Fatalf("prefix of %d bytes parsed without error", n)
		}
	}
}

func TestHostile(t *testing.T) {
	header := func(nt, nkv uint64) []byte {
		b := []byte(Magic)
		b = binary.LittleEndian.AppendUint32(b, 3)
		b = binary.LittleEndian.AppendUint64(b, nt)
		return binary.LittleEndian.AppendUint64(b, nkv)
	}
	kvHeader := func(nkv uint64, key string, typ ValueType) []byte {
		b := header(0, nkv)
		b = appendString(b, key)
		return binary.LittleEndian.AppendUint32(b, uint32(typ))
	}
	tensorFile := func(dims []uint64, typ TensorType, off uint64) []byte {
		b := header(1, 0)
		b = appendString(b, "t")
		b = binary.LittleEndian.AppendUint32(b, uint32(len(dims)))
		for _, d := range dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(typ))
		b = binary.LittleEndian.AppendUint64(b, off)
		return append(b, make([]byte, 64)...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"bad magic", []byte("GGUX\x03\x00\x00\x00")},
		{"version 1", append([]byte(Magic), 1, 0, 0, 0)},
		{"huge tensor count", header(1<<62, 0)},
		{"huge kv count", header(0, 1<<62)},
		{"huge string", binary.LittleEndian.AppendUint64(header(0, 1), 1<<62)},
		{"huge array", binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(kvHeader(1, "k", TypeArray), uint32(TypeUint32)), 1<<40)},
		{"array of strings longer than the file", binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(kvHeader(1, "k", TypeArray), uint32(TypeString)), 1<<20)},
		{"unknown value type", binary.LittleEndian.AppendUint32(kvHeader(1, "k", 99), 0)},
		{"bad bool", append(kvHeader(1, "k", TypeBool), 7)},
		{"deep nesting", append(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(kvHeader(1, "k", TypeArray), uint32(TypeArray)), 1), uint32(TypeArray)), 1), make([]byte, 32)...)},
		{"zero dims", tensorFile(nil, F32, 0)},
		{"five dims", tensorFile([]uint64{1, 1, 1, 1, 1}, F32, 0)},
		{"zero dimension", tensorFile([]uint64{0}, F32, 0)},
		{"element overflow", tensorFile([]uint64{1 << 40, 1 << 40}, F32, 0)},
		{"unknown type", tensorFile([]uint64{4}, 99, 0)},
		{"partial block", tensorFile([]uint64{31}, Q8_0, 0)},
		{"past the end", tensorFile([]uint64{1 << 20}, F32, 0)},
		{"offset past the end", tensorFile([]uint64{4}, F32, 1<<50)},
		{"misaligned offset", tensorFile([]uint64{4}, F32, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.b)
			var e *Error
			if err == nil || (!errors.As(err, &e) && !errors.Is(err, ErrNotGGUF)) {
				t.Fatalf("got %v, want a parse error", err)
			}
		})
	}
}

func TestHalf(t *testing.T) {
	for _, tc := range []struct {
		h uint16
		f float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, float32(math.Ldexp(1, -24))},
		{0x0400, float32(math.Ldexp(1, -14))}, {0x3555, 0.33325195}, {0x0000, 0}, {0x7c00, float32(math.Inf(1))},
	} {
		if got := HalfToFloat(tc.h); got != tc.f {
			t.Errorf("HalfToFloat(%#04x) = %v, want %v", tc.h, got, tc.f)
		}
		if got := FloatToHalf(tc.f); got != tc.h {
			t.Errorf("FloatToHalf(%v) = %#04x, want %#04x", tc.f, got, tc.h)
		}
	}
	// Every finite half survives a round trip through float32.
	for h := range 1 << 16 {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := FloatToHalf(HalfToFloat(uint16(h))); got != uint16(h) {
			t.Fatalf("round trip of %#04x gave %#04x", h, got)
		}
	}
	// Rounding: 1 + 2^-11 is halfway between 1 and the next half, and rounds to even.
	if got := FloatToHalf(1 + float32(math.Ldexp(1, -11))); got != 0x3c00 {
		t.Errorf("tie rounds to %#04x, want 0x3c00", got)
	}
	if got := FloatToHalf(1e6); got != 0x7c00 {
		t.Errorf("overflow gives %#04x, want +Inf", got)
	}
}

func TestQ8_0(t *testing.T) {
	src := make([]float32, 64)
	for i := range src {
		src[i] = float32(i-20) / 7
	}
	q := QuantizeQ8_0(src)
	if len(q) != 68 {
		t.Fatalf("%d bytes, want 68", len(q))
	}
	dst := make([]float32, 64)
	DequantizeRow(Q8_0, q, dst)
	for b := range 2 {
		d := HalfToFloat(binary.LittleEndian.Uint16(q[b*34:]))
		for i := b * 32; i < b*32+32; i++ {
			if diff := math.Abs(float64(dst[i] - src[i])); diff > float64(d)*0.51+1e-3 {
				t.Fatalf("element %d: %v vs %v (scale %v)", i, dst[i], src[i], d)
			}
		}
	}
}

func TestQ4_0AndQ4_1(t *testing.T) {
	blk := make([]byte, 18)
	binary.LittleEndian.PutUint16(blk, FloatToHalf(0.5))
	for i := range 16 {
		blk[2+i] = byte(i) | byte(15-i)<<4
	}
	dst := make([]float32, 32)
	DequantizeRow(Q4_0, blk, dst)
	for i := range 16 {
		if dst[i] != 0.5*float32(i-8) || dst[16+i] != 0.5*float32(7-i) {
			t.Fatalf("Q4_0 element %d: %v, %v", i, dst[i], dst[16+i])
		}
	}
	blk = make([]byte, 20)
	binary.LittleEndian.PutUint16(blk, FloatToHalf(2))
	binary.LittleEndian.PutUint16(blk[2:], FloatToHalf(-1))
	for i := range 16 {
		blk[4+i] = byte(i) | byte(i)<<4
	}
	DequantizeRow(Q4_1, blk, dst)
	for i := range 16 {
		if dst[i] != 2*float32(i)-1 || dst[16+i] != 2*float32(i)-1 {
			t.Fatalf("Q4_1 element %d: %v, %v", i, dst[i], dst[16+i])
		}
	}
}

// TestQ4_K builds a block by hand: sub-block j has scale j+1 and minimum
// 2j (6 bits each, packed as GGML packs them), and every quant is its
// position mod 16.
func TestQ4_K(t *testing.T) {
	blk := make([]byte, 144)
	binary.LittleEndian.PutUint16(blk, FloatToHalf(0.25))
	binary.LittleEndian.PutUint16(blk[2:], FloatToHalf(0.5))
	sc := blk[4:16]
	for j := range 8 {
		s, m := byte(j+1)+40*byte(j/4), byte(2*j)+20*byte(j/4) // exercise the high bits for j ≥ 4
		if j < 4 {
			sc[j] = s
			sc[j+4] = m
		} else {
			sc[j+4] = s&0xf | (m&0xf)<<4
			sc[j-4] |= (s >> 4) << 6
			sc[j] |= (m >> 4) << 6
		}
	}
	qs := blk[16:]
	for i := range 256 {
		// Element i is in chunk i/64; its quant is the low nibble of
		// qs[chunk*32 + i%32] for the first 32 of the chunk, the high one after.
		c, l := i/64, i%64
		q := byte(i % 16)
		if l < 32 {
			qs[c*32+l] |= q
		} else {
			qs[c*32+l-32] |= q << 4
		}
	}
	dst := make([]float32, 256)
	DequantizeRow(Q4_K, blk, dst)
	for i := range 256 {
		j := i / 32
		s, m := float32(j+1+40*(j/4)), float32(2*j+20*(j/4))
		want := 0.25*s*float32(i%16) - 0.5*m
		if dst[i] != want {
			t.Fatalf("element %d (sub-block %d): got %v, want %v", i, j, dst[i], want)
		}
	}
}

// TestQ6_K builds a block by hand: the 6-bit quant of element i is i mod
// 64, and sub-block j (of 16) has scale j-8.
func TestQ6_K(t *testing.T) {
	blk := make([]byte, 210)
	ql, qh, sc := blk[0:128], blk[128:192], blk[192:208]
	binary.LittleEndian.PutUint16(blk[208:], FloatToHalf(0.125))
	for j := range 16 {
		sc[j] = byte(int8(j - 8))
	}
	for i := range 256 {
		q := byte(i % 64)
		half, r := i/128, i%128
		quarter, l := r/32, r%32
		lo, hi := q&0xf, q>>4
		qlIdx := half*64 + l + 32*(quarter%2)
		if quarter < 2 {
			ql[qlIdx] |= lo
		} else {
			ql[qlIdx] |= lo << 4
		}
		qh[half*32+l] |= hi << (2 * quarter)
	}
	dst := make([]float32, 256)
	DequantizeRow(Q6_K, blk, dst)
	for i := range 256 {
		want := 0.125 * float32(i/16-8) * float32(i%64-32)
		if dst[i] != want {
			t.Fatalf("element %d: got %v, want %v", i, dst[i], want)
		}
	}
}

func FuzzParse(f *testing.F) {
	b := sample(f)
	f.Add(b)
	f.Add(b[:100])
	f.Add([]byte(Magic))
	f.Add(append([]byte(Magic), 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Parse(b)
		if err != nil {
			return
		}
		for i := range g.Tensors {
			ti := &g.Tensors[i]
			data := g.TensorData(ti)
			if uint64(len(data)) != ti.Size {
				t.Fatalf("tensor %s: %d bytes, want %d", ti.Name, len(data), ti.Size)
			}
			if ti.Elements() <= 1<<16 {
				DequantizeRow(ti.Type, data, make([]float32, ti.Elements()))
			}
		}
	})
}

// TestQ5_K builds a block by hand: every sub-block has scale 1 and
// minimum 0 (6-bit values packed as in Q4_K) and the 5-bit quant of
// element i is i mod 32, its fifth bit kept in the high-bit bytes.
func TestQ5_K(t *testing.T) {
	blk := make([]byte, 176)
	binary.LittleEndian.PutUint16(blk, FloatToHalf(0.5))
	binary.LittleEndian.PutUint16(blk[2:], FloatToHalf(1))
	sc := blk[4:16]
	for j := range 8 {
		if j < 4 {
			sc[j] = 1
		} else {
			sc[j+4] = 1
		}
	}
	qh, ql := blk[16:48], blk[48:176]
	for i := range 256 {
		c, l := i/64, i%64
		q := byte(i % 32)
		if l < 32 {
			ql[c*32+l] |= q & 0xf
			qh[l] |= (q >> 4) << (2 * c)
		} else {
			ql[c*32+l-32] |= (q & 0xf) << 4
			qh[l-32] |= (q >> 4) << (2*c + 1)
		}
	}
	dst := make([]float32, 256)
	DequantizeRow(Q5_K, blk, dst)
	for i := range 256 {
		if want := 0.5 * float32(i%32); dst[i] != want {
			t.Fatalf("element %d: got %v, want %v", i, dst[i], want)
		}
	}
}
