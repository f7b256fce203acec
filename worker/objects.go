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

	// calling counts the outgoing Durable Object calls in progress of the invocations on
	// the instance's stack that nothing can nest in (see moveAfter).
	calling atomic.Int32
	// onStack counts the invocations on the instance's stack by object ID.
	stackMu sync.Mutex
	onStack map[string]int
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
	if h.inst == nil {
		h.hs.v.release()
		return
	}
	// Invocations may still be on the instance's stack (one waiting while a nested one
	// failed): it is closed once they have returned.
	h.inst.closeIdle(func() {
		h.inst.close()
		h.hs.v.w.stats.objectInstances.Add(-1)
		h.hs.v.release()
	})
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
	h = &objectHost{hs: hs, ready: make(chan struct{}), live: 1}
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
		in.nest = newNester()
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
// holding it waits in an outgoing Durable Object call that other invocations cannot nest
// in (interleave.go: the call was not marked interleavable, or the instance is at
// MaxNesting), before the object moves to another instance (see instance.exec). Most calls
// end sooner; a call that leads back to the instance never would.
const moveAfter = 50 * time.Millisecond

// errMove is exec's result when the object should move to another instance (moveAfter).
var errMove = errors.New("the object's instance is held by an outgoing object call")

// callStart and callEnd bracket an outgoing Durable Object call of inv, an invocation
// running on an object host's instance (see moveAfter); on a pooled instance, or for a wait
// served off the instance's goroutine (interleave.go: the instance is then open for nested
// invocations, not held), they do nothing.
func (inv *invocation) callStart() {
	if h := inv.inst.host; h != nil && !inv.offStack {
		h.calling.Add(1)
		if n := h.inst.nest; n != nil {
			n.mu.Lock()
			n.notify()
			n.mu.Unlock()
		}
	}
}

func (inv *invocation) callEnd() {
	if h := inv.inst.host; h != nil && !inv.offStack {
		h.calling.Add(-1)
	}
}

// enterObject and leaveObject count the invocations of object id on the host's instance's
// stack (more than one while invocations nest): an object with one there must not move.
func (h *objectHost) enterObject(id string) {
	h.stackMu.Lock()
	if h.onStack == nil {
		h.onStack = map[string]int{}
	}
	h.onStack[id]++
	h.stackMu.Unlock()
}

func (h *objectHost) leaveObject(id string) {
	h.stackMu.Lock()
	if h.onStack[id]--; h.onStack[id] <= 0 {
		delete(h.onStack, id)
	}
	h.stackMu.Unlock()
}

func (h *objectHost) isOnStack(id string) bool {
	h.stackMu.Lock()
	defer h.stackMu.Unlock()
	return h.onStack[id] > 0
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

// hostFor returns the instance hosting the turn's object, placing the object first when it
// has none, when its instance failed, or when the worker was deployed since (the object
// moves to the new version and restarts from storage), unless invocations are on its
// instance's stack (one waiting while this request was let in: the object stays on its
// version until they return). placed counts the placements of this invocation.
func (w *Worker) hostFor(ctx context.Context, t *durable.Turn, placed *int) (*objectHost, error) {
	var lastErr error
	for {
		cur := w.cur.Load()
		if a, ok := t.Object.Actor.(*actor); ok {
			h := a.h
			select {
			case <-h.ready:
			case <-ctx.Done():
				return nil, &Error{Kind: Overloaded, Worker: w.name, Cause: fmt.Errorf("waiting for the Durable Object's instance: %w", ctx.Err())}
			}
			if h.initErr != nil {
				lastErr = h.initErr
			} else if !h.isFailed() && (h.hs.v == cur || h.inst.inUse()) {
				return h, nil
			}
			t.Object.Actor = nil
			a.leave()
		}
		if *placed >= maxPlacements {
			if lastErr != nil {
				return nil, asError(w, lastErr)
			}
			return nil, &Error{Kind: Crashed, Worker: w.name, Cause: errors.New("the Durable Object's instances kept failing")}
		}
		*placed++
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

// flush tells the guest, with the instance to itself (exec), which objects left the instance (KindDOEvict), so
// that it drops their values. It returns false when the instance failed (then it is closed
// and its objects restart elsewhere).
func (h *objectHost) flush(ctx context.Context) bool {
	h.hs.mu.Lock()
	ids := h.dropped
	h.dropped = nil
	h.hs.mu.Unlock()
	in := h.inst
	for _, id := range ids {
		var rc uint32
		var err error
		in.call(ctx, workerabi.KindDOEvict, func(inv *invocation) { inv.objID = id },
			func(_ *invocation, r uint32, e error) { rc, err = r, e })
		if err != nil || rc != workerabi.RCOK || in.poisoned {
			h.hs.v.log.Warn("durable object instance failed dropping an evicted object", "object", id, "rc", rc, "err", err)
			h.fail()
			return false
		}
	}
	return true
}

// invokeObject runs one invocation of kind for the object of turn t (reached through
// binding, of class) on the instance hosting it; prep fills the invocation's request. The
// invocation runs with the instance to itself, or nested in one of its invocations that
// waits in an interleavable host operation (instance.exec). A failed invocation (an error,
// or a result other than RCOK and, for alarms, RCAlarmFailed) loses the instance: every
// object on it restarts from storage at its next invocation.
func (w *Worker) invokeObject(ctx context.Context, t *durable.Turn, binding, class string, kind uint32, retries int, prep func(inv *invocation)) (rc uint32, ended bool, err error) {
	id := t.Object.ID.String()
	for placed := 0; ; {
		h, herr := w.hostFor(ctx, t, &placed)
		if herr != nil {
			return 0, false, herr
		}
		in := h.inst
		ran := false
		xerr := in.exec(ctx, func() {
			if h.isFailed() || !h.flush(ctx) {
				return // placed anew below
			}
			ran = true
			h.enterObject(id)
			defer h.leaveObject(id)
			in.call(ctx, kind, func(inv *invocation) {
				inv.turn, inv.nsName, inv.class, inv.objID, inv.retries = t, binding, class, id, retries
				if prep != nil {
					prep(inv)
				}
			}, func(inv *invocation, r uint32, e error) { rc, err, ended = r, e, inv.ended })
			if err == nil && rc != workerabi.RCOK && (kind != workerabi.KindDOAlarm || rc != workerabi.RCAlarmFailed) {
				err = &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("durable object handler returned %d", rc)}
			}
			if err != nil || in.poisoned {
				h.fail()
			}
		}, h.stuck)
		switch {
		case errors.Is(xerr, errMove):
			if h.isOnStack(id) {
				// A request of this object waits lower on the instance's stack, in a
				// call that cannot interleave, and the call came back to the object:
				// moving it would make two live copies of it.
				return 0, false, &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("durable object %s was called back while one of its requests waits in a call that cannot interleave (a goroutine of that request or a storage transaction is alive across the call)", id)}
			}
			// Its instance is held by a call that may lead back to it: the object
			// restarts from storage on another instance.
			if a, ok := t.Object.Actor.(*actor); ok && a.h == h {
				t.Object.Actor = nil
				a.leave()
			}
			continue
		case errors.Is(xerr, errInstanceLost):
			// A nested invocation failed before this one could run: the object
			// restarts from storage on another instance.
			h.fail()
			continue
		case xerr != nil:
			// This request gave up waiting (its context ended): the instance and its
			// other objects are fine.
			return 0, false, xerr
		case !ran:
			continue
		}
		return rc, ended, err
	}
}

// stuck reports whether the invocation holding h's instance waits in an outgoing object
// call that nothing can nest in (see moveAfter).
func (h *objectHost) stuck() bool { return h.calling.Load() > 0 }
