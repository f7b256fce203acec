// Command scheduled is a test worker whose scheduled handler misbehaves on request: the
// event's cron expression picks what it does. GET / answers the last event it saw.
package main

import (
	"errors"
	"os"
	"time"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var last string

var sink uint64

func init() {
	sdk.HandleScheduled(func(ev sdk.ScheduledEvent) error {
		last = ev.Cron + " " + ev.ScheduledTime.Format(time.RFC3339)
		switch ev.Cron {
		case "0 0 * * 1": // an error
			return errors.New("the handler failed")
		case "0 0 * * 2": // a panic, recovered by the SDK
			panic("the handler panicked")
		case "0 0 * * 3": // a loop, stopped by the CPU limit
			for i := uint64(0); ; i++ {
				sink += i
			}
		case "0 0 * * 4": // the guest exits
			os.Exit(3)
		}
		return nil
	})
	sdk.Serve(func(w sdk.ResponseWriter, r *sdk.Request) {
		w.Write([]byte(last))
	})
}

func main() {}
