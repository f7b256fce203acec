package sdk

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// ScheduledEvent is one firing of a cron trigger configured for the worker
// (triggers: {crons: [...]} in its configuration).
type ScheduledEvent struct {
	// Cron is the trigger's expression as configured, e.g. "*/5 * * * *".
	Cron string
	// ScheduledTime is the slot the schedule names, in UTC: the minute the trigger was due,
	// not when the handler started (a missed slot caught up after a restart keeps its
	// time).
	ScheduledTime time.Time
}

var scheduledHandler func(ev ScheduledEvent) error

// HandleScheduled registers the worker's scheduled handler, the one cron triggers run.
// Call it from an init function, next to Serve. The handler runs under the worker's limits
// (CPU and wall time, memory, subrequests), with no request and no response; it reaches
// the worker's bindings (KV, Durable Objects, Fetch, services) and WaitUntil. A returned
// error or a panic is logged by the host and counted as a failed run; the slot is not
// retried.
func HandleScheduled(h func(ev ScheduledEvent) error) { scheduledHandler = h }

// runScheduled runs a KindScheduled invocation. A handler's error or panic returns
// errAlarmFailed: the host counts the failure and keeps the instance.
func runScheduled() error {
	if scheduledHandler == nil {
		return errors.New("no scheduled handler registered (call sdk.HandleScheduled in init)")
	}
	res, err := rawCall(workerabi.OpScheduledEvent, nil)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	ev := ScheduledEvent{Cron: d.Str()}
	ev.ScheduledTime = time.UnixMilli(d.I64()).UTC()
	if d.Err != nil {
		return d.Err
	}
	if err := callScheduled(ev); err != nil {
		fmt.Fprintf(os.Stderr, "verge sdk: scheduled handler (cron %q): %v\n", ev.Cron, err)
		return errAlarmFailed
	}
	return nil
}

// callScheduled runs the handler, turning a panic into an error.
func callScheduled(ev ScheduledEvent) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return scheduledHandler(ev)
}
