package sdk

import (
	"encoding/binary"
	"runtime"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// Interleaving (docs/workers.md, "Input and output gates"). While a Durable Object's
// invocation waits in a subrequest (Fetch), a call to an object (ObjectID.Fetch, Call) or
// Sleep, the host may run other invocations of the instance nested in that wait: it calls
// verge_handle again from inside the host call, on the waiting goroutine's stack, and the
// nested invocation returns before the wait does. The SDK keeps each nesting level's
// state apart: a nested invocation gets its own request and response (the top level
// reuses the package's), its own WaitUntil list and goroutine count, and the shared
// result buffer (outBuf) is only read right after the call that filled it.
//
// The SDK offers a wait for interleaving (workerabi.OpInterleave) only when the calling
// goroutine is the invocation's only one (no goroutine started since the invocation began
// is alive): the host attributes host operations to the innermost running invocation, so a
// second goroutine of the waiting invocation must not run while a nested one does. An
// invocation with goroutines of its own still works; its waits just keep other requests
// out, as before.

var (
	// depth is the number of invocations in progress (nested ones count).
	depth int
	// goroutineBase is runtime.NumGoroutine when the innermost invocation began.
	goroutineBase int
	// levelDone is closed (and replaced) when an invocation returns while levelWaiters
	// wait for one to.
	levelDone    = make(chan struct{})
	levelWaiters int
)

// level is what an invocation sets aside of the one it is nested in.
type level struct {
	depth     int
	waitUntil []func()
	base      int
}

// enterLevel begins an invocation.
func enterLevel() level {
	lv := level{depth: depth + 1, waitUntil: waitUntil, base: goroutineBase}
	depth++
	if depth > 1 {
		waitUntil = nil
	} else {
		waitUntil = waitUntil[:0]
	}
	goroutineBase = runtime.NumGoroutine()
	return lv
}

// leave ends the invocation. Invocations return last in, first out: one that finishes
// while another is nested above it (its goroutine ran while the nested one was parked)
// waits for that one to return first, as verge_handle's frames are on one stack.
func (lv level) leave() {
	for depth > lv.depth {
		levelWaiters++
		<-levelDone
		levelWaiters--
	}
	depth--
	if depth > 0 {
		waitUntil = lv.waitUntil
	}
	goroutineBase = lv.base
	if levelWaiters > 0 {
		close(levelDone)
		levelDone = make(chan struct{})
	}
}

// mayInterleave tells the host that the next host call, a wait, may run other invocations
// nested in it: when the caller is the invocation's only goroutine.
func mayInterleave() {
	if depth == 0 || runtime.NumGoroutine() > goroutineBase {
		return
	}
	_, _ = rawCall(workerabi.OpInterleave, nil)
}

// Sleep pauses the calling invocation for d, like time.Sleep, bounded by its wall time
// limit. In a Durable Object, other requests to the object may run meanwhile (the input
// gate opens, as across a subrequest); time.Sleep keeps it closed: the Go runtime sleeps
// on its scheduler's own stack, where no other request can enter. Outside the host (native
// tests) it is time.Sleep.
func Sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	var arg [8]byte
	binary.LittleEndian.PutUint64(arg[:], uint64(d))
	mayInterleave()
	if _, err := rawCall(workerabi.OpSleep, arg[:]); err != nil {
		time.Sleep(d)
	}
}
