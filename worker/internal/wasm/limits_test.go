package wasm

import (
	"context"
	"errors"
	"testing"
)

func TestCheckSizes(t *testing.T) {
	header := []byte("\x00asm\x01\x00\x00\x00")
	mod := func(sections ...[]byte) []byte {
		b := append([]byte(nil), header...)
		for _, s := range sections {
			b = append(b, s...)
		}
		return b
	}
	cases := []struct {
		name string
		bin  []byte
		ok   bool
	}{
		{"empty module", mod(), true},
		{"real loop module", loopModule(false, false), true},
		// type section (1), 2 bytes long, claiming 0x7fffffff entries
		{"count beyond section length", mod([]byte{1, 6, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00}), false},
		// table section (4): 1 table, funcref, min only, min = 2^28
		{"huge table", mod([]byte{4, 8, 1, 0x70, 0x00, 0x80, 0x80, 0x80, 0x80, 0x01}), false},
		{"table at the limit", mod([]byte{4, 7, 1, 0x70, 0x00, 0x80, 0x80, 0x80, 0x02}), true},
		{"table over the limit", mod([]byte{4, 7, 1, 0x70, 0x00, 0x81, 0x80, 0x80, 0x02}), false},
	}
	for _, tc := range cases {
		err := checkSizes(tc.bin)
		if (err == nil) != tc.ok {
			t.Errorf("%s: checkSizes = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// Compile refuses a module whose claimed sizes would make wazero allocate gigabytes.
func TestCompileRefusesImplausibleSizes(t *testing.T) {
	r, err := NewRuntime(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	bin := []byte("\x00asm\x01\x00\x00\x00\x04\x08\x01\x70\x00\xff\xff\xff\xff\x0f")
	if _, err := r.Compile(context.Background(), bin); !errors.Is(err, errImplausible) {
		t.Fatalf("Compile = %v, want errImplausible", err)
	}
}
