package worker

import (
	"context"
	"time"

	"github.com/verge-edge/verge/queue"
)

// HoldInstances takes every instance slot of w's current version, as requests that run
// long would; release gives them back.
func HoldInstances(w *Worker) (release func()) {
	v := w.cur.Load()
	n := cap(v.slots)
	for range n {
		v.slots <- struct{}{}
	}
	return func() {
		for range n {
			<-v.slots
		}
	}
}

// DeliverBatch runs w's queue handler on b as its consumer does.
func DeliverBatch(ctx context.Context, w *Worker, b *queue.Batch) error {
	return w.deliverBatch(ctx, b)
}

// ConsumerLease is the lease of the batches of w's running consumer of name (0 when none
// runs).
func ConsumerLease(w *Worker, name string) time.Duration {
	w.qc.mu.Lock()
	defer w.qc.mu.Unlock()
	if rc := w.qc.running[name]; rc != nil {
		return rc.lease
	}
	return 0
}
