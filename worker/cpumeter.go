package worker

import "time"

// probeAfter is how much guest wall time an invocation may run before its CPU time is
// measured (at most; an eighth of the CPU limit when that is less). Reading a thread's CPU
// clock is a system call, about 1.5 µs on the virtual machines measured, more than a
// hello-world request's whole host-side cost allows, while wall time (vDSO) costs 60 ns: an
// invocation shorter than this (most of them) reads no CPU clock at all.
const probeAfter = time.Millisecond

// cpuMeter measures the CPU time of one invocation's guest (Limits.CPUTime) on the thread
// the goroutine is locked to. Until the guest has executed for probeAfter of wall time (not
// counting host operations) nothing but the wall clock is read; then the thread's CPU clock
// is, and from there on the guest's CPU time is counted exactly, the thread's CPU clock read
// around every host operation and whenever the wall time since the last reading could hold
// the rest of the budget. The CPU time before the first
// reading (at most probeAfter, plus one fuel quantum: the check runs at the guest's yields)
// is not counted, so that waiting for a CPU never counts: a guest may exceed its budget by
// that much, and is never stopped before it has used it.
type cpuMeter struct {
	budget time.Duration
	exact  bool // the CPU clock is being read: base and counted are valid

	base    int64         // the thread's CPU clock at the last reading
	counted time.Duration // guest CPU time counted up to base
	segWall time.Time     // wall clock when the current stretch of guest execution started
	// Before the first reading: guest wall time of the finished stretches, and the total at
	// which to read. After: the wall time into the stretch after which to read again.
	wallDone time.Duration
	probeAt  time.Duration
	checkAt  time.Duration
}

// start begins an invocation; exact reads the CPU clock from the start (for guests that do
// not yield, whose timer needs a deadline on the clock).
func (m *cpuMeter) start(budget time.Duration, exact bool, now time.Time) {
	*m = cpuMeter{budget: budget, segWall: now, probeAt: min(probeAfter, budget/8)}
	if exact {
		m.exact, m.base, m.checkAt = true, threadCPU(), budget
	}
}

// deadline is the CPU clock reading at which the budget is spent (exact meters).
func (m *cpuMeter) deadline() int64 { return m.base + int64(m.budget-m.counted) }

// pause ends a stretch of guest execution.
func (m *cpuMeter) pause() {
	if m.exact {
		c := threadCPU()
		m.counted += time.Duration(c - m.base)
		m.base = c
	} else {
		m.wallDone += time.Since(m.segWall)
	}
}

// resume starts a stretch of guest execution; false when the budget is spent.
func (m *cpuMeter) resume() bool {
	m.segWall = time.Now()
	if m.exact {
		if m.counted >= m.budget {
			return false
		}
		m.base = threadCPU()
		m.checkAt = m.budget - m.counted
	}
	return true
}

// check is the guest's periodic check at now; false when the budget is spent.
func (m *cpuMeter) check(now time.Time) bool {
	el := now.Sub(m.segWall)
	if !m.exact {
		if m.wallDone+el < m.probeAt {
			return true
		}
		m.exact, m.base, m.segWall, m.checkAt = true, threadCPU(), now, m.budget
		return true
	}
	if el < m.checkAt {
		return true
	}
	c := threadCPU()
	used := m.counted + time.Duration(c-m.base)
	if used >= m.budget {
		return false
	}
	m.checkAt = el + m.budget - used
	return true
}

// finish ends the invocation and returns the guest's CPU time: counted exactly when the
// clock was read, and otherwise its wall time outside host operations (an upper bound).
func (m *cpuMeter) finish() time.Duration {
	if m.exact {
		m.pause()
		return m.counted
	}
	return m.wallDone + time.Since(m.segWall)
}
