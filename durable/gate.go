package durable

import (
	"context"
	"errors"
	"fmt"
)

// Input gate semantics while a turn waits (Cloudflare's documented rules): while an object
// waits for its storage, no other request to it runs; while it waits for anything else (a
// subrequest, a call to another object, a timer), the next requests may. A turn that starts
// such a wait calls Suspend, which opens the gate, and takes it back with Reenter when the
// wait is over. Storage operations never open it (they are not offered while suspended).
//
// The output gate still holds: a suspending turn's writes so far leave its savepoint and
// the object's current batch (theirs and the earlier requests') is committed before the
// gate opens, so a request let in sees only durable writes, and the earlier requests'
// results are not held up by the wait. The turn joins a new batch when it re-enters; it
// records every batch it wrote into, and Do returns only once all of them are committed.
//
// What changes for the suspended turn: its writes before the wait can no longer be rolled
// back by its own failure (as on Cloudflare, where a failed request's writes are not
// undone either); those after it still are. Inside an explicit transaction (Begin) a turn
// does not suspend: the transaction stays atomic and isolated, and the wait holds the gate.

// errNoBatch is the failure of storage operations of a turn that could not re-enter the
// object's batch after a suspension.
var errNoBatch = errors.New("durable: the request has no storage transaction (it could not re-enter the object after waiting)")

// errSuspended is the failure of storage operations called while the turn is suspended.
var errSuspended = errors.New("durable: storage used while the request waits with the input gate open")

// Suspend opens the object's input gate for the duration of a wait that is not storage,
// letting the next request in. It reports false, and leaves the gate closed, inside an
// explicit transaction or when the turn is already suspended or has no batch; the wait
// then runs with the gate closed. After a true result the caller must call Reenter before
// the turn's function returns.
func (t *Turn) Suspend() bool {
	if t.suspended || t.depth > 0 || t.txn == nil {
		return false
	}
	// The writes so far leave the turn's savepoint (later requests' savepoints must not
	// nest inside it), and the batch is committed before the gate opens: the requests
	// queued in it (earlier ones, whose results wait for its commit) are not held up by
	// this turn's wait, and the requests let in start a batch of their own. The commit is
	// a storage wait, made with the gate still closed.
	if err := t.txn.Release("verge_turn"); err != nil {
		return false
	}
	t.txn, t.b = nil, nil
	o := t.Object
	if b := o.batch; b != nil {
		o.batch = nil
		if o.leaseValid() {
			b.err = b.txn.Commit()
		} else {
			b.err = errors.Join(ErrLeaseLost, b.txn.Rollback())
		}
		close(b.done)
	}
	t.suspended = true
	<-o.gate
	return true
}

// Reenter closes the gate again after Suspend: acquire must send on gate (it may do other
// work while it waits for the send to succeed, such as running the requests let in when
// they need the caller's goroutine, but must not return before). The turn then joins the
// object's current batch in a new savepoint. An error (the object's lease lost meanwhile,
// or the storage failing to begin a batch) leaves the turn without storage: its storage
// operations fail, and so does its result.
func (t *Turn) Reenter(ctx context.Context, acquire func(gate chan<- struct{})) error {
	if !t.suspended {
		return nil
	}
	o := t.Object
	// Counted as waiting, so that the request holding the gate leaves the batch open
	// for this turn to join (group commit) rather than committing it alone.
	o.waiting.Add(1)
	acquire(o.gate)
	o.waiting.Add(-1)
	t.suspended = false
	if !o.leaseValid() {
		return fmt.Errorf("durable: object %s: %w", o.ID, ErrLeaseLost)
	}
	// A batch left by the requests let in, that reached its cap or was aborted under
	// them, is committed here before the turn joins a new one.
	if b := o.batch; b != nil && (b.members >= o.ns.opts.MaxBatch || aborted(b.txn)) {
		o.batch = nil
		b.err = b.txn.Commit()
		close(b.done)
	}
	return t.enter(ctx)
}

// Suspended reports whether the turn waits with the gate open.
func (t *Turn) Suspended() bool { return t.suspended }

// storage returns the turn's transaction, or why there is none.
func (t *Turn) storage() (Txn, error) {
	if t.txn != nil {
		return t.txn, nil
	}
	if t.suspended {
		return nil, errSuspended
	}
	return nil, errNoBatch
}
