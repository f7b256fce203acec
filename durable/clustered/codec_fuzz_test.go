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
