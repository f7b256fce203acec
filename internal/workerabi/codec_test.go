package workerabi

import (
	"bytes"
	"math"
	"testing"
)

// TestEncoderBytes pins the wire format of docs/workers-abi.md: little-endian integers and
// u32-length-prefixed byte strings.
func TestEncoderBytes(t *testing.T) {
	var e Encoder
	e.U8(7)
	e.U32(0x01020304)
	e.I64(-2)
	e.Str("ab")
	e.Bytes([]byte{0xff})
	e.Bytes(nil)
	e.Bool(true)
	e.Bool(false)
	want := []byte{
		7,
		4, 3, 2, 1,
		0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		2, 0, 0, 0, 'a', 'b',
		1, 0, 0, 0, 0xff,
		0, 0, 0, 0,
		1,
		0,
	}
	if !bytes.Equal(e.B, want) {
		t.Fatalf("got % x, want % x", e.B, want)
	}
}

func TestDecoderRoundTrip(t *testing.T) {
	var e Encoder
	e.U8(9)
	e.U32(math.MaxUint32)
	e.I64(math.MinInt64)
	e.I64(int64(math.Float64bits(-1.5)))
	e.Str("name")
	e.Bytes([]byte("value"))
	e.Str("")
	e.U32(2)
	d := Decoder{B: e.B}
	if got := d.U8(); got != 9 {
		t.Errorf("U8 = %d, want 9", got)
	}
	if got := d.U32(); got != math.MaxUint32 {
		t.Errorf("U32 = %d, want %d", got, uint32(math.MaxUint32))
	}
	if got := d.I64(); got != math.MinInt64 {
		t.Errorf("I64 = %d, want %d", got, int64(math.MinInt64))
	}
	if got := d.F64(); got != -1.5 {
		t.Errorf("F64 = %v, want -1.5", got)
	}
	if got := d.Str(); got != "name" {
		t.Errorf("Str = %q, want name", got)
	}
	raw := d.Raw()
	if string(raw) != "value" || cap(raw) != len(raw) {
		t.Errorf("Raw = %q cap %d, want \"value\" with cap 5", raw, cap(raw))
	}
	if got := d.Bytes(); got == nil || len(got) != 0 {
		t.Errorf("Bytes of an empty string = %#v, want a non-nil empty slice", got)
	}
	if d.Err != nil || len(d.B) != 4 {
		t.Fatalf("err %v, %d bytes left, want nil and 4", d.Err, len(d.B))
	}
	// A count of 2 elements of at least 4 bytes each does not fit in the 0 bytes left.
	if n := d.Count(4); n != 0 || d.Err != ErrTruncated {
		t.Fatalf("Count = %d, err %v, want 0 and ErrTruncated", n, d.Err)
	}
}

func TestDecoderTruncated(t *testing.T) {
	d := Decoder{B: []byte{5, 0, 0, 0, 'a', 'b'}}
	if got := d.Raw(); got != nil {
		t.Errorf("Raw = %q, want nil", got)
	}
	if d.Err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", d.Err)
	}
	// The error sticks: later reads return zero values even when bytes are left.
	if got := d.U8(); got != 0 {
		t.Errorf("U8 after failure = %d, want 0", got)
	}
	if got := d.Bytes(); got != nil {
		t.Errorf("Bytes after failure = %q, want nil", got)
	}
}

func TestDecoderCountHostile(t *testing.T) {
	d := Decoder{B: []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8}}
	if n := d.Count(8); n != 0 || d.Err != ErrTruncated {
		t.Fatalf("Count = %d, err %v, want 0 and ErrTruncated", n, d.Err)
	}
	d = Decoder{B: []byte{1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}}
	if n := d.Count(8); n != 1 || d.Err != nil {
		t.Fatalf("Count = %d, err %v, want 1 and nil", n, d.Err)
	}
}

// TestNoAllocs checks that encoding into a reused buffer and decoding without copies do not
// allocate: the host and the SDK both rely on it per request.
func TestNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	var sink int
	allocs := testing.AllocsPerRun(100, func() {
		e := Encoder{B: buf[:0]}
		e.U32(200)
		e.Str("Content-Type")
		e.Bytes([]byte("text/plain"))
		e.I64(42)
		d := Decoder{B: e.B}
		sink += int(d.U32()) + len(d.Raw()) + len(d.Raw()) + int(d.I64())
		buf = e.B
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs per run, want 0", allocs)
	}
	if sink == 0 {
		t.Fatal("decoded nothing")
	}
}

// FuzzDecoder checks that no input makes the decoder panic or read past its input.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := Decoder{B: in}
		for n := d.Count(8); n > 0; n-- {
			_ = d.Str()
			_ = d.Bytes()
		}
		_ = d.U8()
		_ = d.F64()
		if d.Err == nil && len(d.B) > len(in) {
			t.Fatalf("%d bytes left of %d", len(d.B), len(in))
		}
	})
}
