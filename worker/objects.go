package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/durable"
	"github.com/verge-edge/verge/internal/workerabi"
)

// This file places live Durable Objects on instances. The objects of a version share its
// instances: each instance hosts up to objectHosts.per of them (Limits.ObjectsPerInstance,
// 1 for a guest older than ABI version 2), each object's Go value living in the instance
// that created it (the SDK keys them by ID), so an object stays pinned to its instance
// until it is evicted, its instance fails, or a deploy moves it to the new version. Objects
// are packed onto the fullest instance with room, so that objects activated together share
// an instance and leave it together, and an instance with no object left is closed at
// once, which unmaps its linear memory. Invocations of the objects of one instance run one
// at a time (objectHost.enter); every object invocation goes through invokeObject.

// objectHosts are the instances of one version that host its live Durable Objects.
type objectHosts struct {
	v   *version
	per int // objects per instance

	mu    sync.Mutex
	hosts []*objectHost // open and not failed, in creation order
}

// objectHost is one instance hosting live objects.
type objectHost struct {
	hs    *objectHosts
	ready chan struct{} // closed once inst is created (or initErr set)
	// inst and initErr are set before ready is closed.
	inst    *instance
	initErr error

	// Under hs.mu:
	live    int      // objects placed here that have not left
	dropped []string // IDs of objects that left, not yet dropped by the guest (KindDOEvict)
	failed  bool     // the instance failed or was closed: its objects restart elsewhere

	// calling counts the running invocation's outgoing Durable Object calls in progress
	// (0 or 1; more once invocations nest).
	calling atomic.Int32
	mu      sync.Mutex
	busy    bool          // an invocation runs: the gate is held
	wake    chan struct{} // closed (and replaced) when busy or calling change
}

// actor is a live object's place: the instance hosting it (durable.Object.Actor). It is
// read and written inside the object's input gate, or by evictActor once the object has no
// turn in progress.
type actor struct {
	h    *objectHost
	id   string
	left bool // under h.hs.mu: the object no longer counts on h
}

// objectsPer is how many objects one instance of a guest of ABI version abi may host.
func objectsPer(abi uint32, limit int) int {
	if abi < workerabi.VersionSharedObjects {
		return 1
	}
	return max(limit, 1)
}

// evictActor releases an evicted object's place (durable.Options.OnEvict). It runs under
// the namespace's lock and calls no guest: the guest drops the object's value at its
// instance's next invocation, or with the instance when that was its last object.
func evictActor(o *durable.Object) {
	if a, ok := o.Actor.(*actor); ok {
		o.Actor = nil
		a.h.hs.v.w.stats.evictions.Add(1)
		a.leave()
	}
}

// leave takes the object off its instance, closing the instance when it was the last one.
func (a *actor) leave() {
	h := a.h
	hs := h.hs
	hs.mu.Lock()
	if a.left {
		hs.mu.Unlock()
		return
	}
	a.left = true
	h.live--
	last := !h.failed && h.live == 0
	switch {
	case last:
		h.failed = true // closed: nothing may be placed here any more
		hs.removeLocked(h)
	case !h.failed && hs.per > 1:
		h.dropped = append(h.dropped, a.id)
	}
	hs.mu.Unlock()
	if last {
		h.close()
	}
}

func (hs *objectHosts) removeLocked(h *objectHost) {
	for i, x := range hs.hosts {
		if x == h {
			hs.hosts = append(hs.hosts[:i], hs.hosts[i+1:]...)
			return
		}
	}
}

// close closes the host's instance once it is created, and drops the host's ref on its
// version. No invocation runs on it: it has no object left, or failed.
func (h *objectHost) close() {
	<-h.ready
	if h.inst != nil {
		h.inst.close()
		h.hs.v.w.stats.objectInstances.Add(-1)
	}
	h.hs.v.release()
}

// place puts a new object on the fullest instance with room whose running invocation is
// not in an outgoing Durable Object call, or on a new host, whose instance the caller then
// creates (start; isNew is true). The caller holds a ref on hs.v, which place consumes.
func (hs *objectHosts) place() (h *objectHost, isNew bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var best *objectHost
	for _, h := range hs.hosts {
		if h.live < hs.per && h.calling.Load() == 0 && (best == nil || h.live > best.live) {
			best = h
		}
	}
	if best != nil {
		best.live++
		hs.v.release()
		return best, false
	}
	h = &objectHost{hs: hs, ready: make(chan struct{}), wake: make(chan struct{}), live: 1}
	hs.hosts = append(hs.hosts, h)
	return h, true
}

// start creates a new host's instance; objects placed on the host meanwhile wait for it.
func (h *objectHost) start(ctx context.Context) {
	in, err := h.hs.v.newInstance(ctx)
	if err != nil {
		h.initErr = err
		h.hs.mu.Lock()
		h.failed = true
		h.hs.removeLocked(h)
		h.hs.mu.Unlock()
	} else {
		in.host = h
		h.inst = in
		h.hs.v.w.stats.objectInstances.Add(1)
	}
	close(h.ready)
	if err != nil {
		h.hs.v.release()
	}
}

func (h *objectHost) isFailed() bool {
	h.hs.mu.Lock()
	defer h.hs.mu.Unlock()
	return h.failed
}

// moveAfter is how long a request waits for its object's instance while the invocation
// holding it waits in an outgoing Durable Object call, before the object moves to another
// instance (see enter). Most calls end sooner; a call that leads back to the instance never
// would.
const moveAfter = 50 * time.Millisecond

// enter takes the host's gate for an invocation. While the invocation running there waits
// in an outgoing Durable Object call, it waits at most moveAfter and then returns false
// without the gate: that call may lead, directly or through other objects, to an object of
// this instance, and waiting for it would then never end, so the caller moves its object to
// another instance instead.
func (h *objectHost) enter(ctx context.Context) (bool, error) {
	var grace *time.Timer
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	var expired <-chan time.Time
	h.mu.Lock()
	for {
		if !h.busy {
			h.busy = true
			h.mu.Unlock()
			return true, nil
		}
		if h.calling.Load() > 0 && grace == nil {
			grace = time.NewTimer(moveAfter)
			expired = grace.C
		}
		wake := h.wake
		h.mu.Unlock()
		select {
		case <-wake:
		case <-expired:
			h.mu.Lock()
			stuck := h.busy && h.calling.Load() > 0
			h.mu.Unlock()
			if stuck {
				return false, nil
			}
			// The call ended: wait for the gate as usual, and again at most moveAfter if
			// another call begins.
			grace, expired = nil, nil
		case <-ctx.Done():
			return false, &Error{Kind: Overloaded, Worker: h.hs.v.w.name, Cause: fmt.Errorf("waiting for the Durable Object's instance: %w", ctx.Err())}
		}
		h.mu.Lock()
	}
}

// exit releases the gate taken by enter.
func (h *objectHost) exit() {
	h.mu.Lock()
	h.busy = false
	h.signalLocked()
	h.mu.Unlock()
}

func (h *objectHost) signalLocked() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// callStart and callEnd bracket an outgoing Durable Object call of the invocation running
// on h (see enter); h nil (a pooled instance) does nothing.
func (h *objectHost) callStart() {
	if h == nil {
		return
	}
	h.calling.Add(1)
	h.mu.Lock()
	h.signalLocked()
	h.mu.Unlock()
}

func (h *objectHost) callEnd() {
	if h != nil {
		h.calling.Add(-1)
	}
}

// fail marks the host's instance lost after a failed invocation (the gate is held): its
// objects restart from storage on other instances at their next invocation. The instance
// is closed by the caller's exit path (closeFailed).
func (h *objectHost) fail() {
	h.hs.mu.Lock()
	already := h.failed
	h.failed = true
	h.dropped = nil
	if !already {
		h.hs.removeLocked(h)
	}
	h.hs.mu.Unlock()
	if !already {
		h.close()
	}
}

// maxPlacements bounds how often one invocation places its object anew (after failed
// instances, moves, deploys) before it gives up.
const maxPlacements = 4

// hostFor returns the instance hosting the turn's object with its gate taken, placing the
// object first when it has none, when its instance failed, when the worker was deployed
// since (the object moves to the new version and restarts from storage), or when its
// instance is in an outgoing call (see enter).
func (w *Worker) hostFor(ctx context.Context, t *durable.Turn) (*objectHost, error) {
	var lastErr error
	for placed := 0; ; {
		cur := w.cur.Load()
		if a, ok := t.Object.Actor.(*actor); ok {
			h := a.h
			if h.hs.v == cur {
				select {
				case <-h.ready:
				case <-ctx.Done():
					return nil, &Error{Kind: Overloaded, Worker: w.name, Cause: fmt.Errorf("waiting for the Durable Object's instance: %w", ctx.Err())}
				}
				if h.initErr != nil {
					lastErr = h.initErr
				} else {
					entered, err := h.enter(ctx)
					if err != nil {
						return nil, err
					}
					if entered {
						if !h.isFailed() && h.flush(ctx) {
							return h, nil
						}
						h.exit()
					}
				}
			}
			t.Object.Actor = nil
			a.leave()
		}
		if placed >= maxPlacements {
			if lastErr != nil {
				return nil, asError(w, lastErr)
			}
			return nil, &Error{Kind: Crashed, Worker: w.name, Cause: errors.New("the Durable Object's instances kept failing")}
		}
		placed++
		if cur = w.acquireCurrent(cur); cur == nil {
			return nil, &Error{Kind: Unavailable, Worker: w.name}
		}
		h, isNew := cur.objects.place()
		t.Object.Actor = &actor{h: h, id: t.Object.ID.String()}
		if isNew {
			h.start(ctx)
			if h.initErr != nil {
				// Not worth retrying at once: memory or initialization failed.
				return nil, asError(w, h.initErr)
			}
		}
	}
}

func asError(w *Worker, err error) *Error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	return &Error{Kind: Crashed, Worker: w.name, Cause: err}
}

// flush tells the guest, under the gate, which objects left the instance (KindDOEvict), so
// that it drops their values. It returns false when the instance failed (then it is closed
// and its objects restart elsewhere).
func (h *objectHost) flush(ctx context.Context) bool {
	h.hs.mu.Lock()
	ids := h.dropped
	h.dropped = nil
	h.hs.mu.Unlock()
	in := h.inst
	for _, id := range ids {
		inv := &in.inv
		inv.reset(ctx, workerabi.KindDOEvict)
		inv.objID = id
		rc, err := in.run(ctx, workerabi.KindDOEvict)
		inv.clear()
		if err != nil || rc != workerabi.RCOK || in.poisoned {
			h.hs.v.log.Warn("durable object instance failed dropping an evicted object", "object", id, "rc", rc, "err", err)
			h.fail()
			return false
		}
	}
	return true
}

// invokeObject runs one invocation of kind for the object of turn t (reached through
// binding, of class) on the instance hosting it; prep fills the invocation's request. A
// failed invocation (an error, or a result other than RCOK and, for alarms, RCAlarmFailed)
// loses the instance: every object on it restarts from storage at its next invocation.
func (w *Worker) invokeObject(ctx context.Context, t *durable.Turn, binding, class string, kind uint32, retries int, prep func(inv *invocation)) (rc uint32, ended bool, err error) {
	h, err := w.hostFor(ctx, t)
	if err != nil {
		return 0, false, err
	}
	in := h.inst
	inv := &in.inv
	inv.reset(ctx, kind)
	inv.turn, inv.nsName, inv.class, inv.objID, inv.retries = t, binding, class, t.Object.ID.String(), retries
	if prep != nil {
		prep(inv)
	}
	rc, err = in.run(ctx, kind)
	ended = inv.ended
	inv.clear()
	if err == nil && rc != workerabi.RCOK && (kind != workerabi.KindDOAlarm || rc != workerabi.RCAlarmFailed) {
		err = &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("durable object handler returned %d", rc)}
	}
	if err != nil || in.poisoned {
		h.fail()
	}
	h.exit()
	return rc, ended, err
}
