package wasm

// mergeGap is the largest run of zero bytes between two active data segments that
// mergeData fills in to join them.
const mergeGap = 1024

// mergeData rewrites a data section, joining consecutive active segments of memory 0 at
// constant offsets that follow each other with at most mergeGap bytes between them (the gap
// becomes zeros, which the fresh memory holds anyway). Go's linker splits a module's data at
// every run of zeros, into tens of thousands of segments, and the runtime keeps a slice
// entry per segment in every instance: about 0.8 MB of Go heap per instance of a Go worker,
// which instances hosting few objects each would pay again and again. The result
// initializes memory exactly as the original does. Modules with a data count section
// (bulk-memory instructions name segments by index) are left alone.
func mergeData(body []byte) ([]byte, error) {
	r := newReader(body)
	n := r.u32()
	var (
		entries []byte
		count   uint32
		curOff  uint32
		cur     []byte
		open    bool
	)
	flush := func() {
		if !open {
			return
		}
		entries = append(entries, 0x00, 0x41)
		entries = appendS32(entries, int32(curOff))
		entries = append(entries, 0x0b)
		entries = appendU32(entries, uint32(len(cur)))
		entries = append(entries, cur...)
		count++
		open = false
		cur = nil
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		start := r.b
		flags := r.u32()
		if flags == 0 {
			if off, ok := simpleOffset(r); ok {
				data := r.bytes(int(r.u32()))
				if r.err != nil {
					break
				}
				end := uint64(curOff) + uint64(len(cur))
				if open && uint64(off) >= end && uint64(off)-end <= mergeGap {
					cur = append(cur, make([]byte, uint64(off)-end)...)
					cur = append(cur, data...)
					continue
				}
				flush()
				curOff, cur, open = off, append([]byte(nil), data...), true
				continue
			}
		}
		// Any other segment is kept as it is, in its place.
		flush()
		switch flags {
		case 0:
			skipConstExpr(r)
		case 1:
		case 2:
			r.u32()
			skipConstExpr(r)
		default:
			return nil, errUninstrumentable
		}
		r.bytes(int(r.u32()))
		if r.err != nil {
			break
		}
		entries = append(entries, start[:len(start)-len(r.b)]...)
		count++
	}
	flush()
	if err := r.end(); err != nil {
		return nil, err
	}
	return append(appendU32(nil, count), entries...), nil
}

// simpleOffset reads an offset expression that is one i32.const, reading nothing and
// returning false for any other.
func simpleOffset(r *reader) (uint32, bool) {
	t := *r
	if t.byte() != 0x41 {
		return 0, false
	}
	off := t.s32()
	if t.byte() != 0x0b || t.err != nil {
		return 0, false
	}
	*r = t
	return uint32(off), true
}

// skipConstExpr reads a constant expression up to its end.
func skipConstExpr(r *reader) {
	var m module
	m.constExpr(nil, r)
}

// s32 reads a signed LEB128 32-bit integer.
func (r *reader) s32() int32 {
	var v int64
	var shift uint
	for i := 0; i < 5; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return int32(v)
		}
	}
	r.fail(errTruncated)
	return 0
}

// appendS32 appends v as a signed LEB128 integer.
func appendS32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
