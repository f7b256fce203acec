//go:build !unix

package overload

// cpuClock is not measured on this platform: the CPU threshold never trips.
type cpuClock struct{}

func (c *cpuClock) busy(int) float64 { return 0 }
