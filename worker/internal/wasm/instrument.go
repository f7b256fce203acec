package wasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// InterruptGlobal is the name of the exported i32 global that instrument adds: the host sets
// it to 1 to stop the guest, which traps at the next loop iteration.
const InterruptGlobal = "verge_interrupt"

// instrument rewrites a module so that it can be interrupted cheaply: it adds a mutable i32
// global, exports it as InterruptGlobal, and inserts at the top of every loop body
//
//	global.get $interrupt
//	if
//	  unreachable
//	end
//
// Every non-terminating execution runs some loop forever (recursion ends in a stack
// overflow), so setting the global stops any guest within one loop iteration. This costs
// a load and a branch per iteration, where the runtime's own mechanism (a call into Go at
// every loop header) makes Go-compiled guests several times slower. Modules using
// instructions outside what Go, TinyGo, Rust and C compilers emit without SIMD or threads
// are refused (errUninstrumentable); the caller then uses the runtime's mechanism.
func instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(bin[4:8]) != 1 {
		return nil, errors.New("wasm: not a WebAssembly 1.0 binary module")
	}
	type section struct {
		id   byte
		body []byte
	}
	var secs []section
	r := &reader{b: bin[8:]}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("wasm: section %d: %w", id, r.err)
		}
		secs = append(secs, section{id, body})
	}
	importedGlobals, definedGlobals := uint32(0), uint32(0)
	hasGlobal, hasExport := false, false
	for _, s := range secs {
		switch s.id {
		case 2:
			n, err := countImportedGlobals(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals = n
		case 6:
			hasGlobal = true
			rr := &reader{b: s.body}
			definedGlobals = rr.u32()
		case 7:
			hasExport = true
		}
	}
	gidx := importedGlobals + definedGlobals
	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b} // i32, mutable, i32.const 0, end
	check := appendU32([]byte{0x23}, gidx)
	check = append(check, 0x04, 0x40, 0x00, 0x0b)

	var out []section
	addGlobal := func(prev []byte) []byte {
		rr := &reader{b: prev}
		n := uint32(0)
		if prev != nil {
			n = rr.u32()
		}
		b := appendU32(nil, n+1)
		b = append(b, rr.b...)
		return append(b, newGlobal...)
	}
	addExport := func(prev []byte) []byte {
		rr := &reader{b: prev}
		n := uint32(0)
		if prev != nil {
			n = rr.u32()
		}
		b := appendU32(nil, n+1)
		b = append(b, rr.b...)
		b = appendU32(b, uint32(len(InterruptGlobal)))
		b = append(b, InterruptGlobal...)
		b = append(b, 0x03)
		return appendU32(b, gidx)
	}
	// order is the position of a section id in the binary's mandated order.
	order := func(id byte) int {
		return map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}[id]
	}
	for _, s := range secs {
		if s.id != 0 {
			if !hasGlobal && order(s.id) > order(6) {
				out = append(out, section{6, addGlobal(nil)})
				hasGlobal = true
			}
			if !hasExport && order(s.id) > order(7) {
				out = append(out, section{7, addExport(nil)})
				hasExport = true
			}
		}
		switch s.id {
		case 6:
			s.body = addGlobal(s.body)
		case 7:
			s.body = addExport(s.body)
		case 10:
			body, err := instrumentCode(s.body, check)
			if err != nil {
				return nil, err
			}
			s.body = body
		}
		out = append(out, s)
	}
	if !hasGlobal {
		out = append(out, section{6, addGlobal(nil)})
	}
	if !hasExport {
		out = append(out, section{7, addExport(nil)})
	}
	res := append([]byte(nil), bin[:8]...)
	for _, s := range out {
		res = append(res, s.id)
		res = appendU32(res, uint32(len(s.body)))
		res = append(res, s.body...)
	}
	return res, nil
}

var errUninstrumentable = errors.New("wasm: module uses instructions the sandbox cannot instrument")

func countImportedGlobals(b []byte) (uint32, error) {
	r := &reader{b: b}
	n := r.u32()
	globals := uint32(0)
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(int(r.u32())) // module
		r.bytes(int(r.u32())) // name
		switch r.byte() {
		case 0x00: // func
			r.u32()
		case 0x01: // table: reftype, limits
			r.byte()
			r.limits()
		case 0x02: // memory
			r.limits()
		case 0x03: // global: valtype, mut
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			return 0, errUninstrumentable
		}
	}
	if r.err != nil {
		return 0, fmt.Errorf("wasm: import section: %w", r.err)
	}
	return globals, nil
}

func instrumentCode(b []byte, check []byte) ([]byte, error) {
	r := &reader{b: b}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/16), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fn := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("wasm: code section: %w", r.err)
		}
		var err error
		body, err = instrumentFunc(body[:0], fn, check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

func instrumentFunc(out, fn, check []byte) ([]byte, error) {
	r := &reader{b: fn}
	groups := r.u32()
	for i := uint32(0); i < groups; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, r.err
	}
	out = append(out, fn[:len(fn)-len(r.b)]...)
	for !r.done() {
		start := len(fn) - len(r.b)
		op := r.byte()
		switch {
		case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1,
			op >= 0x45 && op <= 0xc4:
		case op == 0x02, op == 0x04, op == 0x03:
			r.blockType()
		case op == 0x0c, op == 0x0d, op == 0x10, op == 0x12, op >= 0x20 && op <= 0x26, op == 0xd2,
			op == 0x3f, op == 0x40:
			r.u32()
		case op == 0x0e:
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x11, op == 0x13:
			r.u32()
			r.u32()
		case op == 0x1c:
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.byte()
			}
		case op >= 0x28 && op <= 0x3e:
			r.u32()
			r.u32()
		case op == 0x41, op == 0x42:
			r.u64()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xd0:
			r.byte()
		case op == 0xfc:
			switch sub := r.u32(); {
			case sub <= 7:
			case sub == 8:
				r.u32()
				r.byte()
			case sub == 9, sub == 13, sub == 15, sub == 16, sub == 17:
				r.u32()
			case sub == 10:
				r.byte()
				r.byte()
			case sub == 11:
				r.byte()
			case sub == 12, sub == 14:
				r.u32()
				r.u32()
			default:
				return nil, errUninstrumentable
			}
		default:
			return nil, errUninstrumentable
		}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, fn[start:len(fn)-len(r.b)]...)
		if op == 0x03 {
			out = append(out, check...)
		}
	}
	return out, nil
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) done() bool { return r.err != nil || len(r.b) == 0 }

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errTruncated
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.err = errTruncated
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// u64 reads an unsigned or signed LEB128 number (up to 10 bytes), returning its low bits.
func (r *reader) u64() uint64 {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 number too long")
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.u64()) }

func (r *reader) limits() {
	switch r.byte() {
	case 0x00, 0x02, 0x04, 0x06:
		r.u64()
	case 0x01, 0x03, 0x05, 0x07:
		r.u64()
		r.u64()
	default:
		r.err = errUninstrumentable
	}
}

func (r *reader) blockType() {
	if len(r.b) > 0 {
		switch r.b[0] {
		case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
			r.b = r.b[1:]
			return
		}
	}
	r.u64() // s33 type index
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
