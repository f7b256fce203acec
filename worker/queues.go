package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
	"github.com/verge-edge/verge/queue"
)

// queueLeaseMargin is added to a consumer worker's wall time limit to make the lease of a
// batch: a batch is delivered again only when its invocation cannot be running any more.
// The wait of a batch for a free instance is bounded by the lesser of the wall time limit
// and half the margin (queueInstanceWait), so that the wait, the invocation (its wall
// time) and the settling of the batch's outcome all end within the lease.
const queueLeaseMargin = 30 * time.Second

// queueLease is the lease of the batches of a consumer whose worker's wall time limit is
// wall.
func queueLease(wall time.Duration) time.Duration { return wall + queueLeaseMargin }

// queueInstanceWait bounds how long a batch waits for an instance of a worker whose wall
// time limit is wall; a batch that gets none by then fails (Overloaded) and is retried.
func queueInstanceWait(wall time.Duration) time.Duration { return min(wall, queueLeaseMargin/2) }

// QueueConsumer makes a worker the consumer of a queue: batches of its messages run the
// worker's queue handler (sdk.HandleQueue). Zero fields take queue.ConsumerConfig's
// defaults.
type QueueConsumer struct {
	// Queue is the queue's name. Required; a queue has one consumer.
	Queue string
	// MaxBatchSize caps the messages of a batch (1 to 100). Zero means 10.
	MaxBatchSize int
	// MaxBatchTimeout is how long a batch waits to fill (at most 60s). Zero means 5s;
	// negative means no wait.
	MaxBatchTimeout time.Duration
	// MaxRetries is how many times a failed message is delivered again before it goes to
	// DeadLetterQueue. Zero means none.
	MaxRetries int
	// RetryDelay delays retries that name no delay of their own. Zero means at once.
	RetryDelay time.Duration
	// DeadLetterQueue receives the messages whose retries are spent. Empty means they are
	// dropped with a log line.
	DeadLetterQueue string
	// MaxConcurrency caps the batches in flight (1 to 16). Zero means 1.
	MaxConcurrency int
}

// queueStatus maps a queue error to an ABI status.
func queueStatus(err error) uint32 {
	switch {
	case errors.Is(err, queue.ErrInvalid):
		return workerabi.StatusInvalid
	case errors.Is(err, queue.ErrFull):
		return workerabi.StatusLimit
	}
	return workerabi.StatusInternal
}

// queueOp serves the queue host operations.
func (inv *invocation) queueOp(op uint32, arg []byte) (uint32, []byte) {
	d := workerabi.Decoder{B: arg}
	if op == workerabi.OpQueueSend {
		binding := string(d.Raw())
		q := inv.inst.v.queues[binding]
		if q == nil {
			return fail(workerabi.StatusUnavailable, fmt.Errorf("no queue bound as %q", binding))
		}
		n := d.Count(12)
		if n > queue.MaxSendBatch {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d messages exceed %d per send", n, queue.MaxSendBatch))
		}
		msgs := make([]queue.Message, n)
		for i := range msgs {
			msgs[i] = queue.Message{Body: d.Bytes(), ContentType: d.Str(), Delay: time.Duration(d.U32()) * time.Second}
		}
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := q.Send(inv.io(), msgs); err != nil {
			return fail(queueStatus(err), err)
		}
		inv.inst.v.w.reg.queueCounters(q.Name()).Sent.Add(int64(n))
		return workerabi.StatusOK, nil
	}
	b := inv.qbatch
	if b == nil {
		return fail(workerabi.StatusUnavailable, errors.New("not a queue invocation"))
	}
	if op == workerabi.OpQueueBatch {
		e := &inv.e
		e.Str(b.Queue)
		e.U32(uint32(len(b.Messages)))
		for _, m := range b.Messages {
			e.Str(m.ID)
			e.I64(m.Timestamp.UnixMilli())
			e.U32(uint32(m.Attempts))
			e.Str(m.ContentType)
			e.Bytes(m.Body)
		}
		return workerabi.StatusOK, e.B
	}
	// OpQueueAck, OpQueueRetry: u8 all, u32 count, count × u32 index [, i64 delay_ms]
	var idx []int
	if d.U8() == 1 {
		idx = b.All()
		d.Count(4)
	} else {
		n := d.Count(4)
		if n > len(b.Messages) {
			return fail(workerabi.StatusInvalid, fmt.Errorf("%d indexes for a batch of %d", n, len(b.Messages)))
		}
		idx = make([]int, n)
		for i := range idx {
			idx[i] = int(d.U32())
		}
	}
	if op == workerabi.OpQueueAck {
		if d.Err != nil {
			return fail(workerabi.StatusInvalid, d.Err)
		}
		if err := b.Ack(inv.io(), idx); err != nil {
			return fail(queueStatus(err), err)
		}
		return workerabi.StatusOK, nil
	}
	delay := time.Duration(d.I64()) * time.Millisecond
	if d.Err != nil {
		return fail(workerabi.StatusInvalid, d.Err)
	}
	if err := b.Retry(idx, delay); err != nil {
		return fail(queueStatus(err), err)
	}
	return workerabi.StatusOK, nil
}

// deliverBatch runs the worker's queue handler on b in an instance of the current version,
// under the worker's limits. A failed invocation (a handler error, a crash, a limit)
// returns an error: the batch's messages not acknowledged are retried.
func (w *Worker) deliverBatch(ctx context.Context, b *queue.Batch) error {
	v := w.acquireCurrent(w.cur.Load())
	if v == nil {
		w.stats.fail(Unavailable)
		return &Error{Kind: Unavailable, Worker: w.name}
	}
	defer v.release()
	// The batch's lease runs meanwhile: a batch that waited for an instance longer than it
	// may still run within its lease fails now, and is retried, rather than running after
	// its messages were delivered again.
	gctx, cancel := context.WithTimeout(ctx, queueInstanceWait(v.limits.WallTime))
	in, err := v.get(gctx)
	cancel()
	if err != nil {
		w.stats.fail(err.(*Error).Kind)
		return err
	}
	inv := &in.inv
	inv.reset(ctx, workerabi.KindQueue)
	inv.qbatch = b
	rc, err := in.run(ctx, workerabi.KindQueue)
	inv.qbatch = nil
	if err == nil && rc != workerabi.RCOK {
		err = &Error{Kind: Crashed, Worker: w.name, Cause: fmt.Errorf("queue handler failed (verge_handle returned %d)", rc)}
		w.stats.fail(Crashed)
		// The guest reported its handler's error itself; the instance is sound.
		inv.clear()
		v.put(in)
		return err
	}
	if err != nil {
		inv.clear()
		v.discard(in)
		v.log.Warn("queue handler invocation failed", "queue", b.Queue, "err", err)
		return err
	}
	inv.clear()
	v.put(in)
	return nil
}

// consumerSet is a worker's running queue consumers, by queue name.
type consumerSet struct {
	mu      sync.Mutex
	running map[string]*runningConsumer
}

// runningConsumer is one queue.Consume loop.
type runningConsumer struct {
	cfg QueueConsumer
	// lease is the lease of its batches, from the wall time limit of the version that
	// started it: a version with another limit restarts the consumer.
	lease  time.Duration
	cancel context.CancelFunc
	done   chan struct{}
}

// syncConsumers makes the worker's running consumers those of version v: new ones start,
// removed ones stop, changed ones restart (after their batches in flight end): those whose
// configuration changed, and all of them when the worker's wall time limit changed (their
// lease follows it).
func (w *Worker) syncConsumers(v *version) {
	w.qc.mu.Lock()
	defer w.qc.mu.Unlock()
	want := map[string]QueueConsumer{}
	for _, c := range v.consumers {
		want[c.Queue] = c
	}
	for name, rc := range w.qc.running {
		if c, ok := want[name]; !ok || c != rc.cfg || rc.lease != queueLease(v.limits.WallTime) {
			rc.cancel()
			<-rc.done
			delete(w.qc.running, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if w.qc.running[name] != nil {
			continue
		}
		if err := w.startConsumer(v, want[name]); err != nil {
			v.log.Error("queue consumer not started", "queue", name, "err", err)
		}
	}
}

// startConsumer starts the consumer c; w.qc.mu is held.
func (w *Worker) startConsumer(v *version, c QueueConsumer) error {
	r := w.reg
	q, err := r.openQueue(context.Background(), c.Queue)
	if err != nil {
		return err
	}
	cfg := queue.ConsumerConfig{
		MaxBatchSize: c.MaxBatchSize, MaxBatchTimeout: c.MaxBatchTimeout, MaxRetries: c.MaxRetries,
		RetryDelay: c.RetryDelay, MaxConcurrency: c.MaxConcurrency,
		Lease:    queueLease(v.limits.WallTime),
		Counters: r.queueCounters(c.Queue),
		Logger:   r.svc.Logger.With("worker", w.name),
	}
	if c.DeadLetterQueue != "" {
		if cfg.DeadLetter, err = r.openQueue(context.Background(), c.DeadLetterQueue); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConsumer{cfg: c, lease: cfg.Lease, cancel: cancel, done: make(chan struct{})}
	if w.qc.running == nil {
		w.qc.running = map[string]*runningConsumer{}
	}
	w.qc.running[c.Queue] = rc
	go runConsumer(ctx, w, q, cfg, rc.done)
	return nil
}

// runConsumer runs a worker's consumer of q until ctx ends, then closes done.
func runConsumer(ctx context.Context, w *Worker, q queue.Queue, cfg queue.ConsumerConfig, done chan struct{}) {
	defer close(done)
	queue.Consume(ctx, q, cfg, w.deliverBatch)
}

// stopConsumers stops the worker's consumers, waiting for their batches in flight.
func (w *Worker) stopConsumers() {
	w.qc.mu.Lock()
	defer w.qc.mu.Unlock()
	for name, rc := range w.qc.running {
		rc.cancel()
		<-rc.done
		delete(w.qc.running, name)
	}
}

// queueState is the registry's view of the queues its workers use.
type queueState struct {
	mu       sync.Mutex
	queues   map[string]queue.Queue
	counters map[string]*queue.Counters
}

// openQueue returns the queue name from Services.Queues.
func (r *Registry) openQueue(ctx context.Context, name string) (queue.Queue, error) {
	if r.svc.Queues == nil {
		return nil, errors.New("no queue storage configured")
	}
	r.qs.mu.Lock()
	defer r.qs.mu.Unlock()
	if q := r.qs.queues[name]; q != nil {
		return q, nil
	}
	q, err := r.svc.Queues.Queue(ctx, name)
	if err != nil {
		return nil, err
	}
	if r.qs.queues == nil {
		r.qs.queues = map[string]queue.Queue{}
	}
	r.qs.queues[name] = q
	return q, nil
}

// queueCounters returns the counters of queue name.
func (r *Registry) queueCounters(name string) *queue.Counters {
	r.qs.mu.Lock()
	defer r.qs.mu.Unlock()
	c := r.qs.counters[name]
	if c == nil {
		if r.qs.counters == nil {
			r.qs.counters = map[string]*queue.Counters{}
		}
		c = &queue.Counters{}
		r.qs.counters[name] = c
	}
	return c
}

// QueueStats is a point-in-time view of one queue, for metrics. Counters count this
// registry's messages since the queue was first used here.
type QueueStats struct {
	// Queue is the queue's name.
	Queue string
	// Sent counts messages sent by the workers; Delivered those delivered to a consumer
	// (every delivery counts); Acked those acknowledged; Retried the retries; DeadLettered
	// those moved to a dead letter queue or dropped after their last retry.
	Sent, Delivered, Acked, Retried, DeadLettered int64
	// Backlog counts the messages stored, waiting or being processed; -1 when it cannot be
	// read.
	Backlog int64
}

// QueueStats returns a view of every queue the registry's workers send to or consume,
// sorted by name.
func (r *Registry) QueueStats(ctx context.Context) []QueueStats {
	r.qs.mu.Lock()
	names := slices.Sorted(maps.Keys(r.qs.queues))
	qs := make([]queue.Queue, len(names))
	cs := make([]*queue.Counters, len(names))
	for i, n := range names {
		qs[i] = r.qs.queues[n]
		cs[i] = r.qs.counters[n]
	}
	r.qs.mu.Unlock()
	out := make([]QueueStats, 0, len(names))
	for i, q := range qs {
		st := QueueStats{Queue: names[i], Backlog: -1}
		if n, err := q.Backlog(ctx); err == nil {
			st.Backlog = n
		}
		if c := cs[i]; c != nil {
			st.Sent, st.Delivered, st.Acked = c.Sent.Load(), c.Delivered.Load(), c.Acked.Load()
			st.Retried, st.DeadLettered = c.Retried.Load(), c.DeadLettered.Load()
		}
		out = append(out, st)
	}
	return out
}
