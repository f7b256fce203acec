package clustered

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeDelta feeds arbitrary log record bodies to the decoder: it must not panic, and
// what it accepts must encode back to the same bytes.
func FuzzDecodeDelta(f *testing.F) {
	f.Add(encodeDelta(WALDelta{PageSize: 512, DBPages: 2, Pages: []Page{{No: 1, Data: make([]byte, 512)}, {No: 2, Data: bytes.Repeat([]byte{7}, 512)}}}))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDelta(b)
		if err != nil || len(b) == 0 {
			return
		}
		if got := encodeDelta(d); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %d bytes differ from the %d decoded", len(got), len(b))
		}
	})
}

// FuzzParts splits a record as Append does and joins it as Replay does, with a torn batch
// (its first k parts) before it, and feeds arbitrary part headers to the parser: no panic,
// the joined record is the original, a torn batch yields nothing, and an accepted header
// formats back to itself.
func FuzzParts(f *testing.F) {
	f.Add(bytes.Repeat([]byte{1, 2, 3}, 100), uint16(7), uint8(2), "2/3")
	f.Add([]byte{9}, uint16(1), uint8(0), "1/1")
	f.Add([]byte{}, uint16(0), uint8(5), "0/2")
	f.Fuzz(func(t *testing.T, data []byte, limit uint16, torn uint8, hdr string) {
		if i, n, err := parsePart(hdr); err == nil && formatPart(i, n) != hdr {
			t.Fatalf("part header %q parsed as %d/%d", hdr, i, n)
		}
		lim := int(limit)%512 + 1
		parts := splitRecord(data, lim)
		var r partReader
		// A torn batch first: its parts up to k (fewer than all), then the real batch.
		if len(parts) > 1 {
			for i := range int(torn) % len(parts) {
				if rec, err := r.add(kindBatch, formatPart(i+1, len(parts)), parts[i]); err != nil || rec != nil {
					t.Fatalf("torn part %d/%d: record %d bytes, %v", i+1, len(parts), len(rec), err)
				}
			}
		}
		if len(parts) <= 1 {
			rec, err := r.add(kindBatch, "", data)
			if err != nil || !bytes.Equal(rec, data) || rec == nil {
				t.Fatalf("whole record: %d bytes, %v; want %d", len(rec), err, len(data))
			}
			return
		}
		for i, p := range parts {
			if len(p) == 0 || len(p) > lim {
				t.Fatalf("part %d of %d bytes, limit %d", i, len(p), lim)
			}
			rec, err := r.add(kindBatch, formatPart(i+1, len(parts)), p)
			if err != nil {
				t.Fatal(err)
			}
			if (rec != nil) != (i == len(parts)-1) {
				t.Fatalf("part %d/%d: record returned %v", i+1, len(parts), rec != nil)
			}
			if rec != nil && !bytes.Equal(rec, data) {
				t.Fatalf("joined %d bytes differ from the %d split", len(rec), len(data))
			}
		}
	})
}

// FuzzReadWAL reads arbitrary files as a WAL: no panic, and pages only of the page size.
func FuzzReadWAL(f *testing.F) {
	hdr := []byte{0x37, 0x7f, 0x06, 0x82, 0, 0x2d, 0xe2, 0x18, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}
	frame := append([]byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 512)...)
	f.Add(append(append([]byte{}, hdr...), frame...))
	f.Add(hdr)
	f.Add([]byte("not a wal"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "x.sqlite-wal")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		d, _, err := ReadWAL(path, WALPosition{})
		if err != nil {
			return
		}
		for _, p := range d.Pages {
			if len(p.Data) != d.PageSize {
				t.Fatalf("page %d of %d bytes, page size %d", p.No, len(p.Data), d.PageSize)
			}
		}
	})
}
