package wasm

import (
	"bytes"
	"github.com/verge-edge/verge/internal/testwasm"
	"testing"
)

// dataSeg encodes an active segment of memory 0 at off.
func dataSeg(off int32, data string) []byte {
	b := []byte{0x00, 0x41}
	b = appendS32(b, off)
	b = append(b, 0x0b)
	b = appendU32(b, uint32(len(data)))
	return append(b, data...)
}

// applySegments writes a data section's active segments (flag 0, i32.const offsets) into a
// fresh memory and returns it with the number of segments.
func applySegments(t *testing.T, body []byte) ([]byte, int) {
	t.Helper()
	mem := make([]byte, 1<<16)
	r := newReader(body)
	n := int(r.u32())
	for range n {
		switch flags := r.u32(); flags {
		case 0:
			off, ok := simpleOffset(r)
			if !ok {
				t.Fatal("offset is not one i32.const")
			}
			copy(mem[off:], r.bytes(int(r.u32())))
		case 1:
			r.bytes(int(r.u32()))
		default:
			t.Fatalf("flags %d", flags)
		}
	}
	if err := r.end(); err != nil {
		t.Fatal(err)
	}
	return mem, n
}

func TestMergeDataKeepsMemoryAndJoinsSegments(t *testing.T) {
	segs := [][]byte{
		dataSeg(16, "ab"),
		dataSeg(20, "cd"),      // a gap of 2: joined
		dataSeg(22, "ef"),      // adjacent: joined
		dataSeg(5000, "gh"),    // too far: a new segment
		dataSeg(5002, "ij"),    // joined to the previous
		{0x01, 0x02, 'p', 'q'}, // passive: kept in its place
		dataSeg(4000, "kl"),    // below the previous end: a new segment
		dataSeg(-1&0x7fff, "m"),
	}
	body := appendU32(nil, uint32(len(segs)))
	for _, s := range segs {
		body = append(body, s...)
	}
	out, err := mergeData(body)
	if err != nil {
		t.Fatal(err)
	}
	want, n0 := applySegments(t, body)
	got, n1 := applySegments(t, out)
	if !bytes.Equal(got, want) {
		t.Fatal("merged segments initialize memory differently")
	}
	if n0 != 8 || n1 != 5 {
		t.Fatalf("segments: %d before, %d after; want 8 and 5", n0, n1)
	}
}

func TestSignedLEB(t *testing.T) {
	for _, v := range []int32{0, 1, -1, 63, 64, -64, -65, 1 << 20, -(1 << 31), 1<<31 - 1} {
		r := newReader(appendS32(nil, v))
		if got := r.s32(); got != v || r.end() != nil {
			t.Errorf("%d: got %d (%v)", v, got, r.err)
		}
	}
}

// dataSegments counts the data segments of a module.
func dataSegments(t *testing.T, bin []byte) int {
	t.Helper()
	r := newReader(bin[8:])
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		if id == 11 {
			return int(newReader(body).u32())
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return 0
}

// TestInstrumentMergesGoDataSegments: a Go worker's tens of thousands of data segments
// (Go's linker splits data at runs of zeros) become a few hundred at most once instrumented.
func TestInstrumentMergesGoDataSegments(t *testing.T) {
	bin := testwasm.Build(t, "examples/workers/hello")
	code, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	before, after := dataSegments(t, bin), dataSegments(t, code)
	t.Logf("data segments: %d before, %d after", before, after)
	if before < 1000 || after > before/20 {
		t.Fatalf("data segments: %d before, %d after; want many fewer after", before, after)
	}
}
