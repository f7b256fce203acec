package durable

import (
	"context"
	"errors"
	"fmt"
)

// ErrSyncInTransaction is returned by Turn.Sync inside an explicit transaction: its writes
// cannot be made durable before it ends.
var ErrSyncInTransaction = errors.New("durable: cannot sync inside an explicit transaction")

// turnSync is a turn's state for Sync.
type turnSync struct {
	// batch is the write batch the turn writes into now.
	batch *batch
	// dirty is set by every write since the turn began or last synced.
	dirty bool
	// err is the failure that left the turn without a batch.
	err error
}

// Sync makes the object's writes so far durable before it returns: this turn's and those of
// the earlier turns that share its write batch. A streamed response calls it before it
// releases bytes, so that the output gate holds for each part of the response, not only for
// its end. The rest of the turn runs in a new batch: a turn that fails after a Sync rolls back
// only the writes it made after it. Sync commits nothing (and costs nothing) when no write is
// pending; it fails with ErrSyncInTransaction inside an explicit transaction (Begin).
func (t *Turn) Sync(ctx context.Context) error {
	b := t.sync.batch
	if b == nil {
		return t.sync.err
	}
	if !t.sync.dirty && b.members <= 1 {
		return nil
	}
	if t.depth > 0 {
		return ErrSyncInTransaction
	}
	o := t.Object
	if err := b.txn.Release("verge_turn"); err != nil {
		return fmt.Errorf("durable: release savepoint: %w", err)
	}
	o.batch = nil
	if o.leaseValid() {
		b.err = b.txn.Commit()
	} else {
		b.err = errors.Join(ErrLeaseLost, b.txn.Rollback())
	}
	close(b.done)
	t.sync.dirty = false
	if b.err != nil {
		t.sync.batch, t.sync.err = nil, fmt.Errorf("durable: writes of object %s not committed: %w", o.ID, b.err)
		return t.sync.err
	}
	txn, err := o.store.Begin(ctx)
	if err == nil {
		if err = txn.Savepoint("verge_turn"); err != nil {
			_ = txn.Rollback()
		}
	}
	if err != nil {
		t.sync.batch, t.sync.err = nil, fmt.Errorf("durable: new batch after sync: %w", err)
		return t.sync.err
	}
	nb := &batch{txn: txn, members: 1, done: make(chan struct{})}
	o.batch, t.sync.batch, t.txn = nb, nb, txn
	return nil
}
