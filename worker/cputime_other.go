//go:build !linux

package worker

import "time"

// processStart anchors the monotonic readings below.
var processStart = time.Now()

// threadCPU falls back to monotonic wall time where no per-thread CPU clock is read: an upper
// bound of the thread's CPU time, so a busy machine reaches the CPU limit sooner.
func threadCPU() int64 { return int64(time.Since(processStart)) }

func currentThreadClock() int32 { return 0 }

func readThreadClock(int32) (int64, bool) { return threadCPU(), true }
