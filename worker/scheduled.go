package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// ScheduledEvent is one firing of a cron trigger, for Worker.Scheduled.
type ScheduledEvent struct {
	// Cron is the trigger's expression as configured.
	Cron string
	// Time is the slot the schedule names (not when the handler runs).
	Time time.Time
}

// errScheduledFailed is the cause of a scheduled handler that returned an error.
var errScheduledFailed = errors.New("scheduled handler returned an error")

// Scheduled runs the worker's scheduled handler (sdk.HandleScheduled) for ev, as an
// invocation of kind workerabi.KindScheduled under the worker's limits: it has no request
// and no response, but reaches its bindings (KV, Durable Objects, fetch, services). The
// error says how it failed: an *Error whose Kind is Crashed when the handler returned an
// error (the instance is kept) or the guest crashed (it is discarded), or a limit.
func (w *Worker) Scheduled(ctx context.Context, ev ScheduledEvent) (Result, error) {
	v := w.acquireCurrent(w.cur.Load())
	if v == nil {
		var err error
		if v, err = w.awaitVersion(ctx); v == nil {
			w.stats.fail(Unavailable)
			return Result{}, &Error{Kind: Unavailable, Worker: w.name, Cause: err}
		}
	}
	defer v.release()
	// No client waits: the wait for a free instance is bounded by the wall time limit.
	gctx, cancel := context.WithTimeout(ctx, v.limits.WallTime)
	in, err := v.get(gctx)
	cancel()
	if err != nil {
		w.stats.fail(err.(*Error).Kind)
		return Result{}, err
	}
	inv := &in.inv
	inv.reset(ctx, workerabi.KindScheduled)
	inv.sched = &ev
	rc, err := in.run(ctx, workerabi.KindScheduled)
	res := Result{CPU: inv.cpuUsed}
	inv.clear()
	switch {
	case err != nil:
		v.discard(in)
		v.log.Warn("scheduled handler failed", "cron", ev.Cron, "err", err)
		return res, err
	case rc == workerabi.RCAlarmFailed:
		// The handler returned an error (or panicked, recovered by the SDK): the
		// instance is sound.
		v.put(in)
		w.stats.fail(Crashed)
		return res, &Error{Kind: Crashed, Worker: w.name, Cause: errScheduledFailed}
	case rc != workerabi.RCOK:
		v.discard(in)
		w.stats.fail(Crashed)
		return res, &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("verge_handle returned %d (no scheduled handler registered?)", rc)}
	}
	v.put(in)
	return res, nil
}

// scheduledEvent serves workerabi.OpScheduledEvent.
func (inv *invocation) scheduledEvent() (uint32, []byte) {
	if inv.sched == nil {
		return fail(workerabi.StatusUnavailable, errors.New("not a scheduled invocation"))
	}
	e := &inv.e
	e.Str(inv.sched.Cron)
	e.I64(inv.sched.Time.UnixMilli())
	return workerabi.StatusOK, e.B
}
