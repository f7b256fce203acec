//go:build unix

package overload

import (
	"syscall"
	"time"
)

// cpuClock turns the process's CPU time into a busy share between calls.
type cpuClock struct {
	last    time.Time
	lastCPU time.Duration
}

func (c *cpuClock) busy(procs int) float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	defer func() { c.last, c.lastCPU = now, cpu }()
	if c.last.IsZero() || procs < 1 {
		return 0
	}
	wall := now.Sub(c.last)
	if wall <= 0 {
		return 0
	}
	return float64(cpu-c.lastCPU) / float64(wall) / float64(procs)
}
