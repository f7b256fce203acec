package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// settleTimeout bounds recording a batch's outcome after its handler returned.
const settleTimeout = 10 * time.Second

// receiveBackoff is how long a consumer waits after a failed receive before the next.
const receiveBackoff = time.Second

// DefaultLease is ConsumerConfig.Lease's default.
const DefaultLease = 2 * time.Minute

// ConsumerConfig configures Consume. The zero value delivers batches of up to 10 messages,
// waiting up to 5 seconds to fill one, without retries or a dead letter queue.
type ConsumerConfig struct {
	// MaxBatchSize caps the messages of a batch, 1 to MaxBatchSize. Zero means
	// DefaultMaxBatchSize (10).
	MaxBatchSize int
	// MaxBatchTimeout is how long a batch waits to fill once it has a message, at most
	// MaxBatchTimeout. Zero means DefaultMaxBatchTimeout (5s); negative means no wait.
	MaxBatchTimeout time.Duration
	// MaxRetries is how many times a message is delivered again after its first delivery
	// failed; the next failure sends it to DeadLetter. Zero means none.
	MaxRetries int
	// RetryDelay is the delay of a retry that names none (a failed handler's messages
	// included). Zero means at once.
	RetryDelay time.Duration
	// DeadLetter receives the messages whose retries are spent. Nil means they are
	// dropped, with a log line.
	DeadLetter Queue
	// MaxConcurrency caps the batches in flight, 1 to MaxConcurrency. Zero means 1.
	MaxConcurrency int
	// Lease is how long a batch's messages stay with the handler before they are
	// delivered again; it must exceed the handler's longest run. Zero means DefaultLease.
	Lease time.Duration
	// Counters, when not nil, count the consumer's messages.
	Counters *Counters
	// Logger receives dropped messages and storage errors. Nil means slog.Default().
	Logger *slog.Logger
}

func (c *ConsumerConfig) setDefaults() {
	if c.MaxBatchSize <= 0 {
		c.MaxBatchSize = DefaultMaxBatchSize
	}
	c.MaxBatchSize = min(c.MaxBatchSize, MaxBatchSize)
	switch {
	case c.MaxBatchTimeout == 0:
		c.MaxBatchTimeout = DefaultMaxBatchTimeout
	case c.MaxBatchTimeout < 0:
		c.MaxBatchTimeout = 0
	}
	c.MaxBatchTimeout = min(c.MaxBatchTimeout, MaxBatchTimeout)
	c.MaxRetries = min(max(c.MaxRetries, 0), MaxRetries)
	c.RetryDelay = min(max(c.RetryDelay, 0), MaxDelay)
	c.MaxConcurrency = min(max(c.MaxConcurrency, 1), MaxConcurrency)
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.Counters == nil {
		c.Counters = &Counters{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Counters count a queue's messages; each field is safe for concurrent use.
type Counters struct {
	Sent, Delivered, Acked, Retried, DeadLettered atomic.Int64
}

// Handler processes a batch. It acknowledges or retries messages through the batch; when it
// returns nil the messages it left alone are acknowledged, when it returns an error they
// are retried with the consumer's RetryDelay.
type Handler func(ctx context.Context, b *Batch) error

// Message outcomes in a Batch.
const (
	pending = iota
	acked
	retried
)

// Batch is a batch of messages delivered to a Handler.
type Batch struct {
	// Queue is the queue's name.
	Queue string
	// Messages are the batch's messages, oldest first.
	Messages []*Delivery

	q   Queue
	cfg *ConsumerConfig
	// stopped is set when the consumer stopped during the handler: a failure then is
	// the stop's, and the messages are made deliverable again at once.
	stopped bool
	mu      sync.Mutex
	state   []uint8
	delay   []time.Duration
}

// Ack acknowledges the messages at the indexes idx of Messages at once: when it returns nil
// they are removed for good and never delivered again. Indexes out of range are ErrInvalid;
// acknowledging a message twice is not an error, and an acknowledgement overrides a retry.
func (b *Batch) Ack(ctx context.Context, idx []int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ds []*Delivery
	for _, i := range idx {
		if i < 0 || i >= len(b.Messages) {
			return fmt.Errorf("message index %d out of range (batch of %d): %w", i, len(b.Messages), ErrInvalid)
		}
		if b.state[i] != acked {
			ds = append(ds, b.Messages[i])
		}
	}
	if len(ds) == 0 {
		return nil
	}
	if err := b.q.Ack(ctx, ds); err != nil {
		return err
	}
	for _, i := range idx {
		b.state[i] = acked
	}
	b.cfg.Counters.Acked.Add(int64(len(ds)))
	return nil
}

// Retry marks the messages at indexes idx to be delivered again after delay (negative means
// the consumer's RetryDelay) once the handler returns, or dead-lettered when their retries
// are spent. A message acknowledged already stays acknowledged.
func (b *Batch) Retry(idx []int, delay time.Duration) error {
	if delay > MaxDelay {
		return fmt.Errorf("retry delay %v exceeds %v: %w", delay, MaxDelay, ErrInvalid)
	}
	if delay < 0 {
		delay = b.cfg.RetryDelay
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, i := range idx {
		if i < 0 || i >= len(b.Messages) {
			return fmt.Errorf("message index %d out of range (batch of %d): %w", i, len(b.Messages), ErrInvalid)
		}
	}
	for _, i := range idx {
		if b.state[i] != acked {
			b.state[i], b.delay[i] = retried, delay
		}
	}
	return nil
}

// All returns the indexes of every message of the batch.
func (b *Batch) All() []int {
	idx := make([]int, len(b.Messages))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// NewBatch returns a batch of ds from q, as Consume hands to its handler; for tests and
// benchmarks of handlers.
func NewBatch(q Queue, ds []*Delivery, cfg ConsumerConfig) *Batch {
	cfg.setDefaults()
	return &Batch{Queue: q.Name(), Messages: ds, q: q, cfg: &cfg, state: make([]uint8, len(ds)), delay: make([]time.Duration, len(ds))}
}

// Settle records the outcome of the batch once its handler returned herr: pending messages
// are acknowledged (herr nil) or retried, retries whose budget is spent go to the dead
// letter queue.
func (b *Batch) Settle(ctx context.Context, herr error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ack []*Delivery
	var retry []Retry
	var dead []*Delivery
	for i, d := range b.Messages {
		switch b.state[i] {
		case acked:
			continue
		case pending:
			if herr == nil {
				ack = append(ack, d)
				continue
			}
			b.delay[i] = b.cfg.RetryDelay
			if b.stopped {
				b.delay[i] = 0
			}
		}
		if d.Attempts > b.cfg.MaxRetries {
			dead = append(dead, d)
		} else {
			retry = append(retry, Retry{D: d, Delay: b.delay[i]})
		}
	}
	var errs []error
	if err := b.q.Ack(ctx, ack); err != nil {
		errs = append(errs, err)
	} else {
		b.cfg.Counters.Acked.Add(int64(len(ack)))
	}
	if err := b.q.Retry(ctx, retry); err != nil {
		errs = append(errs, err)
	} else {
		b.cfg.Counters.Retried.Add(int64(len(retry)))
	}
	errs = append(errs, deadLetter(ctx, b.q, dead, b.cfg))
	for i := range b.state {
		b.state[i] = acked
	}
	return errors.Join(errs...)
}

// mover is implemented by queues that move messages to another queue in one step.
type mover interface {
	MoveTo(ctx context.Context, ds []*Delivery, dst Queue) error
}

// deadLetter moves ds from q to cfg.DeadLetter, or drops them when there is none.
func deadLetter(ctx context.Context, q Queue, ds []*Delivery, cfg *ConsumerConfig) error {
	if len(ds) == 0 {
		return nil
	}
	if cfg.DeadLetter == nil {
		for _, d := range ds {
			cfg.Logger.Warn("queue message dropped: retries spent and no dead letter queue", "queue", q.Name(), "id", d.ID, "attempts", d.Attempts)
		}
		if err := q.Ack(ctx, ds); err != nil {
			return err
		}
		cfg.Counters.DeadLettered.Add(int64(len(ds)))
		return nil
	}
	if m, ok := q.(mover); ok {
		if err := m.MoveTo(ctx, ds, cfg.DeadLetter); err == nil {
			cfg.Counters.DeadLettered.Add(int64(len(ds)))
			return nil
		} else if !errors.Is(err, ErrInvalid) {
			return err
		}
	}
	// Send, then acknowledge: a crash in between leaves a copy in both (at least once).
	for start := 0; start < len(ds); {
		msgs := make([]Message, 0, MaxSendBatch)
		size := 0
		for start < len(ds) && len(msgs) < MaxSendBatch && size+len(ds[start].Body) <= MaxSendBatchBytes {
			d := ds[start]
			msgs = append(msgs, Message{Body: d.Body, ContentType: d.ContentType})
			size += len(d.Body)
			start++
		}
		if err := cfg.DeadLetter.Send(ctx, msgs); err != nil {
			return fmt.Errorf("queue %s: dead letter to %s: %w", q.Name(), cfg.DeadLetter.Name(), err)
		}
	}
	if err := q.Ack(ctx, ds); err != nil {
		return err
	}
	cfg.Counters.DeadLettered.Add(int64(len(ds)))
	return nil
}

// Consume delivers q's messages to h in batches until ctx ends, with up to
// cfg.MaxConcurrency batches in flight. A message delivered more than MaxRetries+1 times
// without an outcome (its consumer kept dying) goes to the dead letter queue without being
// delivered again.
func Consume(ctx context.Context, q Queue, cfg ConsumerConfig, h Handler) {
	cfg.setDefaults()
	var wg sync.WaitGroup
	for range cfg.MaxConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consumeLoop(ctx, q, &cfg, h)
		}()
	}
	wg.Wait()
}

// consumeLoop is one of Consume's receivers.
func consumeLoop(ctx context.Context, q Queue, cfg *ConsumerConfig, h Handler) {
	for ctx.Err() == nil {
		ds, err := q.Receive(ctx, cfg.MaxBatchSize, cfg.MaxBatchTimeout, cfg.Lease)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			cfg.Logger.Error("queue receive failed", "queue", q.Name(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(receiveBackoff):
			}
			continue
		}
		live := ds[:0:0]
		var dead []*Delivery
		for _, d := range ds {
			if d.Attempts > cfg.MaxRetries+1 {
				dead = append(dead, d)
			} else {
				live = append(live, d)
			}
		}
		if len(dead) > 0 {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
			if err := deadLetter(sctx, q, dead, cfg); err != nil {
				cfg.Logger.Error("queue dead letter failed", "queue", q.Name(), "err", err)
			}
			cancel()
		}
		if len(live) == 0 {
			continue
		}
		cfg.Counters.Delivered.Add(int64(len(live)))
		b := &Batch{Queue: q.Name(), Messages: live, q: q, cfg: cfg, state: make([]uint8, len(live)), delay: make([]time.Duration, len(live))}
		herr := h(ctx, b)
		b.stopped = ctx.Err() != nil
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		if err := b.Settle(sctx, herr); err != nil {
			cfg.Logger.Error("queue batch outcome not recorded; its messages will be delivered again", "queue", q.Name(), "err", err)
		}
		cancel()
	}
}
