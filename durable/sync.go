package durable

import (
	"context"
	"errors"
	"fmt"
)

// ErrSyncInTransaction is returned by Turn.Sync inside an explicit transaction: its writes
// cannot be made durable before it ends.
var ErrSyncInTransaction = errors.New("durable: cannot sync inside an explicit transaction")

// Sync makes the object's writes so far durable before it returns: this turn's and those of
// the earlier turns that share its write batch. A streamed response calls it before it
// releases bytes, so that the output gate holds for each part of the response, not only for
// its end. The rest of the turn runs in a new batch (as after a suspension, gate.go): a turn
// that fails after a Sync rolls back only the writes it made after it. Sync commits nothing
// (and costs nothing) when no write is pending; it fails with ErrSyncInTransaction inside an
// explicit transaction (Begin).
func (t *Turn) Sync(ctx context.Context) error {
	if _, err := t.storage(); err != nil {
		return err
	}
	b := t.b
	if !t.dirty && b.members <= 1 {
		return nil
	}
	if t.depth > 0 {
		return ErrSyncInTransaction
	}
	o := t.Object
	if err := t.txn.Release("verge_turn"); err != nil {
		return fmt.Errorf("durable: release savepoint: %w", err)
	}
	t.txn, t.b = nil, nil
	o.batch = nil
	if o.leaseValid() {
		b.err = b.txn.Commit()
	} else {
		b.err = errors.Join(ErrLeaseLost, b.txn.Rollback())
	}
	close(b.done)
	if b.err != nil {
		return fmt.Errorf("durable: writes of object %s not committed: %w", o.ID, b.err)
	}
	if err := t.enter(ctx); err != nil {
		return fmt.Errorf("durable: new batch after sync: %w", err)
	}
	return nil
}
