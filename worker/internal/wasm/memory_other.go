//go:build !linux

package wasm

// mapMemory is not used here: linear memory lives on the Go heap.
func mapMemory(uint64) ([]byte, bool) { return nil, false }

func unmapMemory([]byte) {}
