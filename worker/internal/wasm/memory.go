package wasm

import (
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// MemoryAccount is charged for the linear memory of instances, so that their sum can be
// capped across a process.
type MemoryAccount interface {
	// Grow asks for n more bytes of linear memory. False refuses: the guest's memory.grow
	// fails (a Go guest then dies of "out of memory"). It may block briefly.
	Grow(n int64) bool
	// Charge takes n bytes without refusing: an instance's initial memory, which the
	// runtime cannot fail to allocate (callers admit instances before creating them).
	Charge(n int64)
	// Release returns n bytes once an instance is closed.
	Release(n int64)
}

// linearMemory backs one instance's linear memory with its own mapping of the instance's
// maximum size, reserved but not committed (see mapMemory): growing only extends the slice
// (no copy, no garbage), and closing the instance unmaps it, giving the memory back to the
// operating system at once instead of leaving it to the Go heap's scavenger. Where no such
// mapping can be made, it falls back to the Go heap.
type linearMemory struct {
	acct    MemoryAccount
	mapping []byte // the reservation; nil when on the Go heap
	heap    []byte
	size    int64       // bytes in use, charged to acct
	denied  atomic.Bool // acct refused a growth
	once    sync.Once
	touched bool // Allocate was called
}

var _ experimental.LinearMemory = (*linearMemory)(nil)

// Allocate implements experimental.MemoryAllocator for the one memory of an instance.
func (m *linearMemory) Allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	m.touched = true
	if b, ok := mapMemory(maxBytes); ok {
		m.mapping = b
	} else {
		m.heap = make([]byte, 0, capBytes)
	}
	return m
}

// Reallocate grows the memory to size bytes. The first call (the module's initial memory)
// is always granted, as wazero cannot fail it; the caller bounds instantiation instead.
func (m *linearMemory) Reallocate(size uint64) []byte {
	delta := int64(size) - m.size
	if delta > 0 && m.acct != nil && m.size > 0 && !m.acct.Grow(delta) {
		m.denied.Store(true)
		return nil
	} else if delta > 0 && m.acct != nil && m.size == 0 {
		m.acct.Charge(delta)
	}
	if m.mapping != nil {
		if size > uint64(len(m.mapping)) {
			m.undo(delta)
			return nil
		}
		m.size = int64(size)
		return m.mapping[:size:size]
	}
	if size > uint64(cap(m.heap)) {
		m.heap = append(m.heap[:cap(m.heap)], make([]byte, int(size)-cap(m.heap))...)
	}
	m.size = int64(size)
	m.heap = m.heap[:size]
	return m.heap
}

func (m *linearMemory) undo(delta int64) {
	if delta > 0 && m.acct != nil {
		m.acct.Release(delta)
	}
}

// Free is wazero closing the module, possibly from another goroutine while the guest still
// runs on the memory (an interrupt of an uninstrumented guest): the memory is released by
// release, once the instance is known to be idle.
func (m *linearMemory) Free() {}

// release unmaps the memory and returns it to the account, once.
func (m *linearMemory) release() {
	m.once.Do(func() {
		if m.mapping != nil {
			unmapMemory(m.mapping)
			m.mapping = nil
		}
		m.heap = nil
		if m.acct != nil && m.size > 0 {
			m.acct.Release(m.size)
		}
		m.size = 0
	})
}
