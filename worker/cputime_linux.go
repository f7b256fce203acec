package worker

import "golang.org/x/sys/unix"

// threadCPU returns the CPU time (user and system) the calling OS thread has used, in
// nanoseconds. The guest's goroutine is locked to its thread while it runs (instance.run),
// so differences of readings taken on that goroutine are the guest's own CPU time: time the
// thread waits for a CPU on a busy machine, or for the Go scheduler, is not counted. Linux
// serves this clock with a system call (no vDSO), so it is read at the start and end of an
// invocation and around host operations that do work of their own, not per yield.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// currentThreadClock returns the clock id of the calling thread's CPU time that any thread
// of the process can read (what pthread_getcpuclockid computes: the thread id, inverted and
// shifted, with the per-thread and scheduler-time bits).
func currentThreadClock() int32 {
	return int32(^uint32(unix.Gettid())<<3 | 6)
}

// readThreadClock reads a clock returned by currentThreadClock, from any thread.
func readThreadClock(id int32) (int64, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(id, &ts) != nil {
		return 0, false
	}
	return ts.Nano(), true
}
