package wasm

import (
	"errors"
	"fmt"
)

// maxTableElements bounds the initial size a module may declare for a table. Go and Rust
// modules declare one function table with an entry per address-taken function (tens of
// thousands); wazero allocates the whole table at instantiation.
const maxTableElements = 1 << 22

var errImplausible = errors.New("wasm: module declares sizes larger than it can hold")

// checkSizes refuses, before wazero sees a module, the declarations that would make it
// allocate far more than the module's size: a section whose element count exceeds its length
// in bytes (every element takes at least one byte, so such a module is invalid anyway, but
// wazero allocates for the count before it finds out), and tables declared larger than
// maxTableElements.
func checkSizes(bin []byte) error {
	if len(bin) < 8 {
		return errors.New("wasm: module too short")
	}
	r := newReader(bin[8:])
	for !r.done() {
		id := r.byte()
		body := r.bytes(int(r.u32()))
		if r.err != nil {
			return fmt.Errorf("wasm: section %d: %w", id, r.err)
		}
		switch id {
		case 0, 8, 12: // custom, start, data count: not vectors
			continue
		}
		br := newReader(body)
		n := br.u32()
		if br.err != nil || n > uint32(len(body)) {
			return fmt.Errorf("%w (section %d claims %d entries in %d bytes)", errImplausible, id, n, len(body))
		}
		if id == 4 { // tables: reftype, limits (flags, min[, max])
			for i := uint32(0); i < n && br.err == nil; i++ {
				br.byte()
				flags := br.byte()
				if min := br.u64(); min > maxTableElements {
					return fmt.Errorf("%w (table %d of %d elements; the limit is %d)", errImplausible, i, min, maxTableElements)
				}
				if flags&1 != 0 {
					br.u64()
				}
			}
		}
	}
	return nil
}
