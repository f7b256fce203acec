package wasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Names of what instrument adds to a module. Guests do not import or export them
// themselves: the runtime adds them at deploy.
const (
	// YieldModule and YieldName name the host function () -> i32 that instrument imports:
	// the guest's periodic safe point (see hostYield).
	YieldModule = "verge"
	YieldName   = "yield"
	// FuelGlobal is the exported mutable i32 global counting the loop iterations left before
	// the guest calls YieldName again.
	FuelGlobal = "verge_fuel"
)

// FuelQuantum is the fuel the yield function grants: a guest spending it in a tight loop
// (about a nanosecond an iteration) reaches Go code every ~16 µs, so the scheduler, the
// garbage collector and the limit checks get a safe point, while the host call costs well
// under 1% of the loop.
const FuelQuantum = 1 << 14

// instrument rewrites a module so that it reaches the host periodically and cheaply: it
// imports the host function YieldModule.YieldName of type () -> i32, adds a mutable i32
// global exported as FuelGlobal (initially 0), and inserts at the top of every loop body
//
//	global.get $fuel
//	i32.const 1
//	i32.sub
//	global.set $fuel
//	global.get $fuel
//	i32.const 0
//	i32.le_s
//	if
//	  call $yield   ;; traps if the instance was interrupted or is over its limits
//	  global.set $fuel
//	end
//
// Every non-terminating execution runs some loop forever (recursion ends in a stack
// overflow), so any guest calls yield at least every FuelQuantum loop iterations. Compiled
// guest code is not preemptible by the Go scheduler: without this, a looping guest would
// hold its thread forever, starving timers when GOMAXPROCS is 1 and deadlocking any
// garbage collection's stop-the-world. The runtime's own mechanism (a call into Go at every
// loop header) gives the same guarantee but makes Go-compiled guests several times slower.
//
// The new import is appended after the module's function imports, so the module's own
// functions move up by one index: instrument renumbers every function reference (calls,
// ref.func in code and constant expressions, exports, the start function, element
// segments and the "name" section). Modules using instructions or encodings outside what
// Go, TinyGo, Rust and C compilers emit without threads are refused (errUninstrumentable);
// the caller then uses the runtime's mechanism.
func instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(bin[4:8]) != 1 {
		return nil, errors.New("wasm: not a WebAssembly 1.0 binary module")
	}
	type section struct {
		id   byte
		body []byte
	}
	var secs []section
	r := newReader(bin[8:])
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("wasm: section %d: %w", id, r.err)
		}
		secs = append(secs, section{id, body})
	}
	var m module
	present := map[byte]bool{}
	for _, s := range secs {
		var err error
		switch s.id {
		case 1:
			m.types, err = countTypes(s.body)
		case 2:
			m.importedFuncs, m.importedGlobals, err = countImports(s.body)
		case 6:
			rr := newReader(s.body)
			m.definedGlobals = rr.u32()
			err = rr.err
		}
		if err != nil {
			return nil, fmt.Errorf("wasm: section %d: %w", s.id, err)
		}
		present[s.id] = true
	}
	m.fuel = m.importedGlobals + m.definedGlobals
	m.dataCount = present[12]
	m.yield = m.importedFuncs

	var out []section
	// order is the position of a section id in the binary's mandated order.
	order := map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}
	addMissing := func(before byte) error {
		for _, id := range []byte{1, 2, 6, 7} {
			if !present[id] && (before == 0 || order[id] < order[before]) {
				body, err := m.rewrite(id, nil)
				if err != nil {
					return err
				}
				out = append(out, section{id, body})
				present[id] = true
			}
		}
		return nil
	}
	for _, s := range secs {
		if s.id != 0 {
			if err := addMissing(s.id); err != nil {
				return nil, err
			}
		}
		if s.id == 0 {
			name, ok := customName(s.body)
			if ok && name == "name" {
				// Debugging aid only: renumbered when it parses, dropped otherwise.
				body, err := renumberNames(s.body, m.fn)
				if err != nil {
					continue
				}
				s.body = body
			}
		} else {
			body, err := m.rewrite(s.id, s.body)
			if err != nil {
				return nil, fmt.Errorf("wasm: section %d: %w", s.id, err)
			}
			s.body = body
		}
		out = append(out, s)
	}
	if err := addMissing(0); err != nil {
		return nil, err
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

// module is what instrument needs to know about a module to rewrite its sections.
type module struct {
	types           uint32 // the new function type () -> i32 gets this index
	importedFuncs   uint32 // the yield import gets this function index
	importedGlobals uint32
	definedGlobals  uint32
	yield           uint32
	fuel            uint32 // the fuel global's index
	dataCount       bool   // the module has a data count section (see mergeData)
}

// fn maps a function index of the original module to the instrumented one.
func (m *module) fn(i uint32) uint32 {
	if i < m.importedFuncs {
		return i
	}
	return i + 1
}

// rewrite returns the instrumented body of a section; body is nil for a section the module
// lacks and instrument must add.
func (m *module) rewrite(id byte, body []byte) ([]byte, error) {
	switch id {
	case 1: // types: append () -> i32
		return appendEntry(body, []byte{0x60, 0x00, 0x01, 0x7f}), nil
	case 2: // imports: append verge.yield
		imp := appendName(nil, YieldModule)
		imp = appendName(imp, YieldName)
		imp = append(imp, 0x00)
		return appendEntry(body, appendU32(imp, m.types)), nil
	case 6: // globals: renumber initializers, append the fuel global
		out, r, n := vecStart(body)
		for i := uint32(0); i < n && r.err == nil; i++ {
			valType(r)
			mut := r.byte()
			out = append(out, r.consumed()...)
			if mut > 1 {
				return nil, errUninstrumentable
			}
			out = m.constExpr(out, r)
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		return appendEntry(out, []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}), nil // i32, mutable, i32.const 0
	case 7: // exports: renumber functions, append the fuel global
		out, r, n := vecStart(body)
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.bytes(int(r.u32()))
			kind := r.byte()
			out = append(out, r.consumed()...)
			idx := r.u32()
			if kind == 0x00 {
				idx = m.fn(idx)
			}
			out = appendU32(out, idx)
			r.consumed()
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		exp := appendName(nil, FuelGlobal)
		exp = append(exp, 0x03)
		return appendEntry(out, appendU32(exp, m.fuel)), nil
	case 8: // start
		r := newReader(body)
		idx := r.u32()
		if err := r.end(); err != nil {
			return nil, err
		}
		return appendU32(nil, m.fn(idx)), nil
	case 9:
		return m.elements(body)
	case 10:
		return m.code(body)
	case 11:
		if m.dataCount {
			return body, nil
		}
		return mergeData(body)
	}
	return body, nil
}

// elements renumbers the functions of the element section, in all its encodings: bit 0 of
// the flags means passive or declarative (no table offset), bit 1 an explicit table index
// (active) or declarative (otherwise), bit 2 expressions instead of function indices.
func (m *module) elements(body []byte) ([]byte, error) {
	out, r, n := vecStart(body)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			return nil, errUninstrumentable
		}
		if flags&1 == 0 {
			if flags&2 != 0 {
				r.u32() // table index
			}
			out = append(out, r.consumed()...)
			out = m.constExpr(out, r)
		}
		if flags&3 != 0 {
			switch k := r.byte(); {
			case flags&4 == 0 && k != 0x00, flags&4 != 0 && k != 0x70 && k != 0x6f:
				return nil, errUninstrumentable
			}
		}
		count := r.u32()
		out = append(out, r.consumed()...)
		for j := uint32(0); j < count && r.err == nil; j++ {
			if flags&4 != 0 {
				out = m.constExpr(out, r)
				continue
			}
			out = appendU32(out, m.fn(r.u32()))
			r.consumed()
		}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// constExpr copies a constant expression from r to out, renumbering ref.func.
func (m *module) constExpr(out []byte, r *reader) []byte {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b:
			return append(out, r.consumed()...)
		case 0x41, 0x42: // i32.const, i64.const
			r.u64()
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23: // global.get
			r.u32()
		case 0xd0: // ref.null
			if t := r.byte(); t != 0x70 && t != 0x6f {
				r.fail(errUninstrumentable)
			}
		case 0xd2: // ref.func
			idx := r.u32()
			r.consumed()
			out = append(out, 0xd2)
			out = appendU32(out, m.fn(idx))
			continue
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constants: add, sub, mul
		case 0xfd: // v128.const
			if r.u32() != 12 {
				r.fail(errUninstrumentable)
			}
			r.bytes(16)
		default:
			r.fail(errUninstrumentable)
		}
		out = append(out, r.consumed()...)
	}
	return out
}

// loopCheck is the fuel check inserted at the top of every loop body. Keeping the fuel in
// a local instead (a register) measured slower for Go-compiled guests, whose loops call
// functions that would each need the global synchronized.
func (m *module) loopCheck() []byte {
	g := appendU32(nil, m.fuel)
	b := append([]byte{0x23}, g...)             // global.get $fuel
	b = append(b, 0x41, 0x01, 0x6b)             // i32.const 1; i32.sub
	b = append(append(b, 0x24), g...)           // global.set $fuel
	b = append(append(b, 0x23), g...)           // global.get $fuel
	b = append(b, 0x41, 0x00, 0x4c, 0x04, 0x40) // i32.const 0; i32.le_s; if
	b = appendU32(append(b, 0x10), m.yield)     // call $yield
	b = append(append(b, 0x24), g...)           // global.set $fuel
	return append(b, 0x0b)                      // end
}

func (m *module) code(b []byte) ([]byte, error) {
	check := m.loopCheck()
	r := newReader(b)
	n := r.u32()
	out := appendU32(make([]byte, 0, len(b)+len(b)/8), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		fn := r.bytes(int(size))
		if r.err != nil {
			return nil, r.err
		}
		var err error
		if body, err = m.function(body[:0], fn, check); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return out, nil
}

// function rewrites a function body: it renumbers function references and inserts check
// at every loop header.
func (m *module) function(out, fn, check []byte) ([]byte, error) {
	r := newReader(fn)
	for groups := r.u32(); groups > 0 && r.err == nil; groups-- {
		r.u32()
		valType(r)
	}
	if r.err != nil {
		return nil, r.err
	}
	out = append(out, r.consumed()...)
	for !r.done() {
		op := r.byte()
		switch {
		case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1,
			op >= 0x45 && op <= 0xc4:
		case op == 0x02, op == 0x04, op == 0x03:
			r.blockType()
		case op == 0x10, op == 0x12, op == 0xd2: // call, return_call, ref.func
			idx := r.u32()
			r.consumed()
			out = appendU32(append(out, op), m.fn(idx))
		case op == 0x0c, op == 0x0d, op >= 0x20 && op <= 0x26, op == 0x3f, op == 0x40:
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
				valType(r)
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
			if t := r.byte(); t != 0x70 && t != 0x6f {
				return nil, errUninstrumentable
			}
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
		out = append(out, r.consumed()...)
		if op == 0x03 {
			out = append(out, check...)
		}
	}
	return out, r.err
}

// renumberNames renumbers the function indices of a "name" custom section: function names
// (subsection 1), local names (2) and label names (3), all keyed by function index in
// increasing order, which a monotonic renumbering keeps.
func renumberNames(body []byte, fn func(uint32) uint32) ([]byte, error) {
	r := newReader(body)
	r.bytes(int(r.u32()))
	out := append([]byte(nil), r.consumed()...)
	for !r.done() {
		id := r.byte()
		sub := r.bytes(int(r.u32()))
		if r.err != nil {
			return nil, r.err
		}
		r.consumed()
		if id < 1 || id > 3 {
			out = append(out, id)
			out = appendU32(out, uint32(len(sub)))
			out = append(out, sub...)
			continue
		}
		s, sr, n := vecStart(sub)
		for i := uint32(0); i < n && sr.err == nil; i++ {
			s = appendU32(s, fn(sr.u32()))
			sr.consumed()
			if id == 1 {
				sr.bytes(int(sr.u32()))
			} else {
				for k := sr.u32(); k > 0 && sr.err == nil; k-- {
					sr.u32()
					sr.bytes(int(sr.u32()))
				}
			}
			s = append(s, sr.consumed()...)
		}
		if err := sr.end(); err != nil {
			return nil, err
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return out, r.err
}

// customName returns the name of a custom section.
func customName(body []byte) (string, bool) {
	r := newReader(body)
	name := r.bytes(int(r.u32()))
	return string(name), r.err == nil
}

// countTypes counts the type section's entries, refusing anything but plain function types.
func countTypes(b []byte) (uint32, error) {
	r := newReader(b)
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		if r.byte() != 0x60 {
			return 0, errUninstrumentable
		}
		for k := 0; k < 2; k++ {
			for c := r.u32(); c > 0 && r.err == nil; c-- {
				valType(r)
			}
		}
	}
	return n, r.end()
}

// countImports counts the imported functions and globals.
func countImports(b []byte) (funcs, globals uint32, err error) {
	r := newReader(b)
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.bytes(int(r.u32())) // module
		r.bytes(int(r.u32())) // name
		switch r.byte() {
		case 0x00: // func
			r.u32()
			funcs++
		case 0x01: // table: reftype, limits
			valType(r)
			r.limits()
		case 0x02: // memory
			r.limits()
		case 0x03: // global: valtype, mut
			valType(r)
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			return 0, 0, errUninstrumentable
		}
	}
	return funcs, globals, r.end()
}
