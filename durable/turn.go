package durable

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Get returns the values of keys (nil for absent ones).
func (t *Turn) Get(keys []string) ([][]byte, error) {
	txn, err := t.storage()
	if err != nil {
		return nil, err
	}
	return txn.Get(keys)
}

// Put stores entries.
func (t *Turn) Put(entries []Entry) error {
	txn, err := t.storage()
	if err != nil {
		return err
	}
	t.dirty = true
	return txn.Put(entries)
}

// Delete removes keys and returns how many existed.
func (t *Turn) Delete(keys []string) (int, error) {
	txn, err := t.storage()
	if err != nil {
		return 0, err
	}
	t.dirty = true
	return txn.Delete(keys)
}

// List returns entries in key order.
func (t *Turn) List(o ListOptions) ([]Entry, error) {
	txn, err := t.storage()
	if err != nil {
		return nil, err
	}
	return txn.List(o)
}

// SQL runs one statement on the object's database.
func (t *Turn) SQL(query string, args []Value) (*SQLResult, error) {
	txn, err := t.storage()
	if err != nil {
		return nil, err
	}
	t.dirty = true
	return txn.SQL(query, args)
}

// DeleteAll removes all keys, all SQL tables and the alarm.
func (t *Turn) DeleteAll(ctx context.Context) error {
	txn, err := t.storage()
	if err != nil {
		return err
	}
	t.dirty = true
	if err := txn.DeleteAll(); err != nil {
		return err
	}
	return t.DeleteAlarm(ctx)
}

// maxTxnDepth bounds nested explicit transactions.
const maxTxnDepth = 32

// Begin opens a nested explicit transaction.
func (t *Turn) Begin() error {
	if _, err := t.storage(); err != nil {
		return err
	}
	if t.depth >= maxTxnDepth {
		return fmt.Errorf("durable: more than %d nested transactions: %w", maxTxnDepth, ErrInvalid)
	}
	if err := t.txn.Savepoint(fmt.Sprintf("verge_tx%d", t.depth+1)); err != nil {
		return fmt.Errorf("durable: begin transaction: %w", err)
	}
	t.depth++
	return nil
}

var errNoTxn = errors.New("durable: no transaction in progress")

// Commit ends the innermost explicit transaction, keeping its writes in the request's batch.
func (t *Turn) Commit() error {
	if t.depth == 0 {
		return errNoTxn
	}
	err := t.txn.Release(fmt.Sprintf("verge_tx%d", t.depth))
	t.depth--
	return err
}

// Rollback undoes the innermost explicit transaction.
func (t *Turn) Rollback() error {
	if t.depth == 0 {
		return errNoTxn
	}
	err := t.txn.RollbackTo(fmt.Sprintf("verge_tx%d", t.depth))
	t.depth--
	return err
}

// GetAlarm returns the object's alarm time; ok is false when none is set.
func (t *Turn) GetAlarm(ctx context.Context) (time.Time, bool, error) {
	a, ok, err := t.Object.ns.alarms.Get(ctx, t.Object.ID)
	return a.At, ok, err
}

// SetAlarm sets the object's alarm; it is durable when SetAlarm returns.
func (t *Turn) SetAlarm(ctx context.Context, at time.Time) error {
	if err := t.Object.ns.alarms.Set(ctx, t.Object.ID, at); err != nil {
		return err
	}
	t.Object.ns.poke()
	return nil
}

// DeleteAlarm cancels the object's alarm.
func (t *Turn) DeleteAlarm(ctx context.Context) error {
	if err := t.Object.ns.alarms.Delete(ctx, t.Object.ID); err != nil {
		return err
	}
	t.Object.ns.poke()
	return nil
}

// poke wakes the alarm scheduler to look at the index again.
func (ns *Namespace) poke() {
	select {
	case ns.wake <- struct{}{}:
	default:
	}
}

// alarmLoop fires due alarms one at a time: at least once, retried with exponential backoff
// (AlarmBackoff, doubling) up to MaxAlarmRetries times. An alarm is removed from the index
// only after its run succeeded, so a crash during a run makes it fire again after restart.
// On a shared index (AlarmDeferrer) an alarm whose object another process owns is left to
// that process for AlarmOwnedElsewhereDelay at a time.
func (ns *Namespace) alarmLoop() {
	defer ns.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-ns.stop
		cancel()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		a, ok, err := ns.alarms.Next(ctx)
		wait := time.Hour
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			ns.opts.Logger.Error("durable: reading alarms", "namespace", ns.opts.Name, "err", err)
			wait = time.Second
		case ok && ns.opts.OnAlarm != nil:
			wait = time.Until(a.At)
		}
		if wait <= 0 {
			ns.fire(ctx, a)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ns.stop:
			return
		case <-ns.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (ns *Namespace) fire(ctx context.Context, a Alarm) {
	err := ns.Do(ctx, a.ID, func(t *Turn) error { return ns.opts.OnAlarm(ctx, t, a.Retries) })
	if ctx.Err() != nil {
		return
	}
	d := ns.shared
	if err == nil {
		if err := ns.alarms.Done(ctx, a.ID, a.At); err != nil && ctx.Err() == nil {
			ns.opts.Logger.Error("durable: alarm done", "namespace", ns.opts.Name, "id", a.ID.String(), "err", err)
			if d != nil {
				// The index is unreachable: not run again at once (it fires again later).
				d.Defer(a.ID, a.At, time.Now().Add(AlarmBackoff))
			}
		}
		return
	}
	if d != nil && errors.Is(err, ErrOwnedElsewhere) {
		// Another process owns the object and fires the alarm; this one looks again later
		// in case that owner dies with the alarm unfired. Not a failed attempt.
		d.Defer(a.ID, a.At, time.Now().Add(AlarmOwnedElsewhereDelay))
		return
	}
	retries := a.Retries + 1
	if retries > MaxAlarmRetries {
		ns.opts.Logger.Error("durable: alarm dropped after retries", "namespace", ns.opts.Name, "id", a.ID.String(), "retries", a.Retries, "err", err)
		_ = ns.alarms.Done(ctx, a.ID, a.At)
		return
	}
	delay := AlarmBackoff << (retries - 1)
	ns.opts.Logger.Warn("durable: alarm failed; retrying", "namespace", ns.opts.Name, "id", a.ID.String(), "in", delay, "err", err)
	if err := ns.alarms.Reschedule(ctx, a.ID, a.At, time.Now().Add(delay), retries); err != nil {
		ns.opts.Logger.Error("durable: alarm reschedule", "namespace", ns.opts.Name, "err", err)
		if d != nil {
			d.Defer(a.ID, a.At, time.Now().Add(delay))
		}
	}
}
