package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// Interleaving (docs/workers.md, "Input and output gates"). An actor's instance is one
// WebAssembly stack, entered through verge_handle one call at a time. When an invocation
// waits in a host operation the guest marked interleavable (workerabi.OpInterleave before
// OpFetch, OpDOFetch, OpServiceFetch or OpSleep), the wait runs on a goroutine of its own while the
// waiting host call takes work for the instance: invocations that arrive meanwhile run
// nested on the same goroutine (a re-entrant verge_handle from inside the host call), each
// with its own invocation state, CPU meter and wall time limit, and return before the
// waiting one resumes (last in, first out). For a Durable Object, the waiting turn opens
// the object's input gate (durable.Turn.Suspend) so that the next requests reach the
// instance, and takes it back before resuming (Reenter), serving the instance meanwhile so
// that a request holding the gate can finish. Storage operations are never interleavable:
// the gate stays closed while the object waits for its storage.

// exitLost is the exit code with which the invocations waiting on an instance end when a
// nested invocation failed: the guest's stacks are undefined, the instance is dropped.
const exitLost = 0xfe000003

var errInstanceLost = errors.New("the instance was lost: a request that ran interleaved with this one failed (see its error)")

// MaxNesting bounds how many invocations one instance runs at once (the waiting ones and
// the one on top): each level holds a WebAssembly call stack, and a flood of requests to an
// object whose requests all wait must not grow them without bound. Requests beyond it wait
// until a level returns (the waits at the limit keep their object's gate closed).
const MaxNesting = 32

// nester holds an actor's instance's interleaving state.
type nester struct {
	mu sync.Mutex
	// busy is set while an invocation runs on the instance, open while the goroutine
	// running it waits in an interleavable host operation and takes jobs.
	busy, open bool
	// lost is why the instance can run nothing more (a nested invocation failed).
	lost error
	// queue holds the jobs waiting for the open host call; wake (one slot) tells it.
	queue []*nestJob
	wake  chan struct{}
	// changed is closed (and replaced) when busy, open or lost change.
	changed chan struct{}
	// levels are the invocation states of nested invocations, one per nesting level
	// beyond the first (the instance's own inv).
	levels []*invocation
	// closeAfter is set when the actor was closed while invocations were on its stack:
	// the outermost one closes the instance when it returns.
	closeAfter func()
}

// nestJob is an invocation waiting to run nested in a waiting one.
type nestJob struct {
	fn   func()
	err  error
	done chan struct{}
}

func newNester() *nester {
	return &nester{wake: make(chan struct{}, 1), changed: make(chan struct{})}
}

// notify wakes the goroutines waiting for a change; n.mu is held.
func (n *nester) notify() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// exec runs fn with the instance to itself: at once on this goroutine when the instance is
// idle, or nested in the invocation that waits in an interleavable host operation, on that
// invocation's goroutine (this one waits). fn runs invocations (instance.call). While the
// instance is busy and cannot nest, and stuck (nil: never) reports true for moveAfter
// without a change, exec gives up with errMove (objects.go).
func (i *instance) exec(ctx context.Context, fn func(), stuck func() bool) error {
	n := i.nest
	if n == nil {
		fn()
		return nil
	}
	var grace *time.Timer
	var expired <-chan time.Time
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	for {
		n.mu.Lock()
		if n.lost != nil {
			err := n.lost
			n.mu.Unlock()
			return &Error{Kind: Crashed, Worker: i.v.w.name, Cause: err}
		}
		if !n.busy {
			n.busy = true
			n.notify()
			n.mu.Unlock()
			fn()
			n.mu.Lock()
			n.busy = false
			n.notify()
			closeAfter := n.closeAfter
			n.closeAfter = nil
			n.mu.Unlock()
			if closeAfter != nil {
				closeAfter()
			}
			return nil
		}
		if n.open {
			j := &nestJob{fn: fn, done: make(chan struct{})}
			n.queue = append(n.queue, j)
			n.mu.Unlock()
			select {
			case n.wake <- struct{}{}:
			default:
			}
			// A queued job is always run or failed by the waiting host call (it drains
			// the queue before it returns), so this wait ends; the job's invocation is
			// bounded by its own limits.
			<-j.done
			if j.err != nil {
				return &Error{Kind: Crashed, Worker: i.v.w.name, Cause: j.err}
			}
			return nil
		}
		ch := n.changed
		n.mu.Unlock()
		if stuck != nil && stuck() && grace == nil {
			grace = time.NewTimer(moveAfter)
			expired = grace.C
		}
		select {
		case <-ch:
			if grace != nil && !stuck() {
				grace.Stop()
				grace, expired = nil, nil
			}
		case <-expired:
			grace, expired = nil, nil
			n.mu.Lock()
			held := n.busy && !n.open
			n.mu.Unlock()
			if held && stuck() {
				return errMove
			}
		case <-ctx.Done():
			if grace != nil {
				grace.Stop()
			}
			return &Error{Kind: Overloaded, Worker: i.v.w.name, Cause: fmt.Errorf("waiting for the object's instance: %w", ctx.Err())}
		}
	}
}

// isLost reports whether a nested invocation failed and the instance can run nothing more.
func (n *nester) isLost() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost != nil
}

// inUse reports whether invocations are running on the instance.
func (i *instance) inUse() bool {
	if i.nest == nil {
		return false
	}
	i.nest.mu.Lock()
	defer i.nest.mu.Unlock()
	return i.nest.busy
}

// closeIdle closes the instance now, or when the invocations on its stack have returned.
func (i *instance) closeIdle(closeFn func()) {
	if n := i.nest; n != nil {
		n.mu.Lock()
		if n.busy {
			n.closeAfter = closeFn
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
	}
	closeFn()
}

// call runs one invocation of kind on the instance, which the caller has to itself (exec):
// setup prepares the invocation state, done reads its results before the state is cleared.
// Nested in a waiting invocation, it uses the state of its nesting level.
func (i *instance) call(ctx context.Context, kind uint32, setup func(*invocation), done func(inv *invocation, rc uint32, err error)) {
	inv := &i.inv
	if d := i.in.Depth(); d > 0 {
		n := i.nest
		for len(n.levels) < d {
			n.levels = append(n.levels, &invocation{inst: i})
		}
		inv = n.levels[d-1]
	}
	inv.reset(ctx, kind)
	setup(inv)
	rc, err := i.runInv(ctx, kind, inv)
	done(inv, rc, err)
	inv.clear()
	if err != nil && i.in.Depth() > 0 {
		// The failed invocation unwound on top of others: the guest's stacks are not
		// what those expect any more.
		n := i.nest
		n.mu.Lock()
		if n.lost == nil {
			n.lost = fmt.Errorf("%w: %v", errInstanceLost, err)
		}
		n.notify()
		n.mu.Unlock()
		i.poisoned = true
		i.in.Abandon(exitLost)
	}
}

// runState is what a nested invocation sets aside of the waiting one's instance state.
type runState struct {
	state        uint64
	wallDeadline int64
	cpuClock     int32
	wallEnd      time.Time
}

func (i *instance) saveRun() runState {
	return runState{state: i.state.Load(), wallDeadline: i.wallDeadline.Load(), cpuClock: i.cpuClock.Load(), wallEnd: i.cur.wallEnd}
}

// restoreRun gives the waiting invocation its wall time limit back (a limit that passed
// while the nested one ran stops it at once); its CPU meter resumes when its host call
// returns.
func (i *instance) restoreRun(s runState) {
	i.wallDeadline.Store(s.wallDeadline)
	i.cpuClock.Store(s.cpuClock)
	i.wall.Reset(max(time.Until(s.wallEnd), 0))
}

// interleavable reports whether op is a wait other invocations may run in.
func interleavable(op uint32) bool {
	return op == workerabi.OpFetch || op == workerabi.OpFetchStream || op == workerabi.OpDOFetch || op == workerabi.OpDOFetchStream || op == workerabi.OpServiceFetch || op == workerabi.OpSleep
}

// interleave serves op, which the guest marked interleavable. On an actor's instance a wait
// runs on its own goroutine while this one opens the object's input gate and runs the
// invocations that arrive, nested; otherwise op is served as usual.
func (inv *invocation) interleave(op uint32, arg []byte) (uint32, []byte) {
	i := inv.inst
	n := i.nest
	if n == nil || !interleavable(op) || i.in.Depth() >= MaxNesting {
		// At MaxNesting the wait keeps the gate closed, as waits did before interleaving:
		// the requests that arrive wait until a level returns.
		return inv.dispatch(op, arg)
	}
	// arg aliases guest memory, which the nested invocations use meanwhile.
	arg = bytes.Clone(arg)
	t := inv.turn
	opened := t != nil && t.Suspend()
	res := make(chan waitResult, 1)
	inv.io() // made here: the wait's goroutine uses it, this one may cancel it
	go inv.waitOp(op, arg, res)
	var out waitResult
	n.serve(i, func(wake <-chan struct{}) bool {
		if n.isLost() {
			// A nested invocation failed: this one ends when its wait returns, so the
			// wait is cut short.
			inv.ioCancel()
		}
		select {
		case out = <-res:
			return true
		case <-wake:
			return false
		}
	})
	if opened {
		err := t.Reenter(inv.ctx, func(gate chan<- struct{}) {
			n.serve(i, func(wake <-chan struct{}) bool {
				select {
				case gate <- struct{}{}:
					return true
				case <-wake:
					return false
				}
			})
		})
		if err != nil && out.status == workerabi.StatusOK {
			// The object is not this node's any more, or its storage failed: the wait's
			// result stands, the invocation's storage operations fail from here on.
			i.v.log.Warn("durable object could not take its input gate back after a wait", "err", err)
		}
	}
	return out.status, out.res
}

type waitResult struct {
	status uint32
	res    []byte
}

// waitOp serves a wait for interleave on its own goroutine, owned by the waiting host
// call, which always receives its result.
func (inv *invocation) waitOp(op uint32, arg []byte, out chan<- waitResult) {
	inv.offStack = true // not the instance's goroutine: nothing to unpin (objstream.go)
	st, res := inv.dispatch(op, arg)
	inv.offStack = false
	out <- waitResult{st, res}
}

// serve runs queued jobs on this goroutine until wait reports true; wait is given the
// channel that signals queued jobs. While it waits the instance is open for jobs; the
// jobs still queued when it ends are run before serve returns.
func (n *nester) serve(i *instance, wait func(wake <-chan struct{}) bool) {
	for {
		n.mu.Lock()
		n.open = true
		n.notify()
		n.mu.Unlock()
		if wait(n.wake) {
			break
		}
		n.runQueued(i)
	}
	n.mu.Lock()
	n.open = false
	n.notify()
	n.mu.Unlock()
	n.runQueued(i)
}

// runQueued runs the queued jobs, nested, one after the other; after the instance was
// lost it fails them.
func (n *nester) runQueued(i *instance) {
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.mu.Unlock()
			return
		}
		j := n.queue[0]
		n.queue = n.queue[1:]
		lost := n.lost
		wasOpen := n.open
		n.open = false
		n.mu.Unlock()
		if lost != nil {
			j.err = lost
		} else {
			j.fn()
		}
		close(j.done)
		n.mu.Lock()
		n.open = wasOpen
		n.notify()
		n.mu.Unlock()
	}
}

// sleepOp serves workerabi.OpSleep: a wait of wall time, ended early by the wall time
// limit or an interrupt.
func (inv *invocation) sleepOp(arg []byte) (uint32, []byte) {
	if len(arg) != 8 {
		return fail(workerabi.StatusInvalid, errors.New("sleep: want a u64 duration"))
	}
	d := time.Duration(min(binary.LittleEndian.Uint64(arg), uint64(inv.inst.v.limits.WallTime)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-inv.inst.stop:
	case <-inv.io().Done():
	}
	return workerabi.StatusOK, nil
}
