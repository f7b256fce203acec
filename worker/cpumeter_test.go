package worker

import (
	"runtime"
	"testing"
	"time"
)

// spinCPU uses about d of the thread's CPU time.
func spinCPU(d time.Duration) {
	end := threadCPU() + int64(d)
	for threadCPU() < end {
	}
}

// TestCPUMeterCountsCPUNotWaiting drives a meter through a guest's life on this thread: wall
// time passing without CPU use (a descheduled or waiting thread) never spends the budget, CPU
// use does, and host calls are excluded.
func TestCPUMeterCountsCPUNotWaiting(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the thread CPU clock is read on Linux only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const budget = 20 * time.Millisecond
	var m cpuMeter
	t0 := time.Now()
	m.start(budget, false, t0)
	if !m.check(t0.Add(100*time.Microsecond)) || m.exact {
		t.Fatal("the CPU clock was read before the probe time")
	}
	// Far more wall time than the budget, with no CPU used: not spent.
	if !m.check(t0.Add(10*budget)) || !m.exact {
		t.Fatal("stopped, or the clock not read, after waiting past the probe time")
	}
	if !m.check(t0.Add(20 * budget)) {
		t.Fatal("waiting spent the budget")
	}
	// Host calls are not counted.
	m.pause()
	spinCPU(budget)
	if !m.resume() {
		t.Fatal("CPU used in a host call spent the budget")
	}
	// Using the CPU is.
	spinCPU(budget / 2)
	if !m.check(time.Now().Add(budget)) {
		t.Fatal("stopped with half the budget used")
	}
	spinCPU(budget)
	if m.check(time.Now().Add(100 * budget)) {
		t.Fatal("not stopped after using more than the budget")
	}
	if used := m.finish(); used < budget || used > 3*budget {
		t.Fatalf("counted %v, want about 1.5x the %v budget", used, budget)
	}
}
