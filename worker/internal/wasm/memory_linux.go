package wasm

import "golang.org/x/sys/unix"

// mapMemory reserves n bytes of address space, readable and writable, without committing
// memory or swap for it (MAP_NORESERVE): pages are backed on first touch, and only the
// instance's bounds-checked accesses below its current size touch them.
func mapMemory(n uint64) ([]byte, bool) {
	if n == 0 || n > 1<<32 {
		return nil, false
	}
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	return b, true
}

func unmapMemory(b []byte) { _ = unix.Munmap(b) }
