//go:build !linux

package worker

// availableMemory is unknown here: DefaultMemoryLimit uses its fallback.
func availableMemory() int64 { return 0 }
