package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/verge-edge/verge/cluster"
)

// JetStream naming: queue q is the stream "verge_queue_<q>" with the subjects
// "verge.queue.<q>.m" (deliverable messages) and "verge.queue.<q>.d.<id>" (delayed sends,
// JetStream message schedules that publish to the first subject when due), consumed by
// the durable pull consumer "verge_queue_<q>".
const (
	streamPrefix = "verge_queue_"
	// Headers of a message: its ID, content type and send time (Unix ms).
	hdrID   = "Verge-Queue-Id"
	hdrType = "Verge-Queue-Type"
	hdrSent = "Verge-Queue-Sent"
)

// JetStream timeouts.
const (
	// JetStreamOpTimeout bounds creating a stream or consumer and reading its state.
	JetStreamOpTimeout = 10 * time.Second
	// jsIdleFetch is how long one pull request waits for a first message.
	jsIdleFetch = 5 * time.Second
)

// JetStreamStore keeps each queue in a JetStream stream with work-queue retention (a
// message is deleted when its acknowledgement is recorded) replicated to the node's
// replica count; its consumer is a durable pull consumer with explicit acknowledgement,
// whose AckWait is the consumer's lease. Retries are negative acknowledgements with a
// delay; delayed sends are JetStream message schedules. Every node of a cluster reaches the
// same queues, and a queue survives the loss of a minority of its replicas.
//
// Unlike SQLiteStore, a send of several messages is not atomic (each is durable when Send
// returns nil; a failed Send may have stored some), and a move to a dead letter queue is a
// send followed by an acknowledgement.
type JetStreamStore struct {
	js       jetstream.JetStream
	replicas int
	now      func() time.Time
	// maxBacklog and maxBytes cap each queue (DefaultMaxBacklog, DefaultMaxBytes).
	maxBacklog, maxBytes int64

	mu     sync.Mutex
	queues map[string]*jsQueue
	closed bool
}

var _ Store = (*JetStreamStore)(nil)

// NewJetStreamStore returns a store over the cluster node's connection; its streams have
// node.Replicas() replicas. Streams are created on first use.
func NewJetStreamStore(node *cluster.Node) *JetStreamStore {
	return NewJetStreamStoreConn(node.JetStream(), node.Replicas())
}

// NewJetStreamStoreConn returns a store over a JetStream context whose streams have
// replicas replicas (at least 1).
func NewJetStreamStoreConn(js jetstream.JetStream, replicas int) *JetStreamStore {
	return &JetStreamStore{js: js, replicas: max(replicas, 1), now: time.Now, maxBacklog: DefaultMaxBacklog, maxBytes: DefaultMaxBytes, queues: map[string]*jsQueue{}}
}

// Queue returns the queue name; its stream is created (or checked) on first use.
func (s *JetStreamStore) Queue(_ context.Context, name string) (Queue, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	q := s.queues[name]
	if q == nil {
		q = &jsQueue{s: s, name: name, stream: streamPrefix + name, subject: "verge.queue." + name + ".m"}
		s.queues[name] = q
	}
	return q, nil
}

// Close stops the store's receivers; the streams stay.
func (s *JetStreamStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *JetStreamStore) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// jsQueue is one queue of a JetStreamStore.
type jsQueue struct {
	s       *JetStreamStore
	name    string
	stream  string
	subject string

	mu       sync.Mutex
	backlog  int64     // the stream's messages when last read
	bytes    int64     // and their bytes
	readAt   time.Time // when backlog was read
	st       jetstream.Stream
	cons     jetstream.Consumer
	consWait time.Duration // the consumer's AckWait
}

func (q *jsQueue) Name() string { return q.name }

// ensure creates or updates the queue's stream.
func (q *jsQueue) ensure(ctx context.Context) (jetstream.Stream, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st != nil {
		return q.st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, JetStreamOpTimeout)
	defer cancel()
	st, err := q.s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.stream,
		Description: "Verge queue " + q.name,
		Subjects:    []string{"verge.queue." + q.name + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.s.replicas,
		// No MaxMsgs nor MaxBytes: message schedules rule out DiscardNew, and discarding
		// old messages would lose them. Send enforces DefaultMaxBacklog and
		// DefaultMaxBytes instead (backlogCap).
		MaxMsgSize:        MaxMessageBytes + 4096,
		Duplicates:        2 * time.Minute,
		AllowMsgSchedules: true,
	})
	if err != nil {
		return nil, fmt.Errorf("queue %s: stream: %w", q.name, err)
	}
	q.st = st
	return st, nil
}

// consumer returns the queue's durable consumer, with AckWait lease.
func (q *jsQueue) consumer(ctx context.Context, lease time.Duration) (jetstream.Consumer, error) {
	st, err := q.ensure(ctx)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cons != nil && q.consWait == lease {
		return q.cons, nil
	}
	ctx, cancel := context.WithTimeout(ctx, JetStreamOpTimeout)
	defer cancel()
	c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       q.stream,
		Description:   "Verge queue consumer",
		FilterSubject: q.subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       lease,
		MaxDeliver:    -1, // the consumer loop dead-letters (Consume)
		MaxAckPending: 10000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("queue %s: consumer: %w", q.name, err)
	}
	q.cons, q.consWait = c, lease
	return c, nil
}

// jsError wraps a publish error.
func jsError(name string, err error) error {
	return fmt.Errorf("queue %s: send: %w", name, err)
}

// backlogRefresh is how old the backlog Send checks against may be.
const backlogRefresh = time.Second

// backlogCap fails a send of msgs when the queue holds DefaultMaxBacklog messages or
// DefaultMaxBytes of them (as the stream counts them, headers included), as read at most
// backlogRefresh ago: the caps are approximate by what was sent meanwhile.
func (q *jsQueue) backlogCap(ctx context.Context, msgs []Message) error {
	q.mu.Lock()
	fresh := q.s.now().Sub(q.readAt) < backlogRefresh
	b, bytes := q.backlog, q.bytes
	q.mu.Unlock()
	if !fresh {
		var err error
		if b, bytes, err = q.usage(ctx); err != nil {
			return err
		}
		q.mu.Lock()
		q.backlog, q.bytes, q.readAt = b, bytes, q.s.now()
		q.mu.Unlock()
	}
	if b+int64(len(msgs)) > q.s.maxBacklog {
		return fmt.Errorf("queue %s holds %d messages: %w", q.name, b, ErrFull)
	}
	if bytes+sendBytes(msgs) > q.s.maxBytes {
		return fmt.Errorf("queue %s holds %d bytes of messages (limit %d): %w", q.name, bytes, q.s.maxBytes, ErrFull)
	}
	return nil
}

func (q *jsQueue) Send(ctx context.Context, msgs []Message) error {
	if err := CheckSend(msgs); err != nil {
		return err
	}
	if err := q.backlogCap(ctx, msgs); err != nil {
		return err
	}
	now := q.s.now()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		id := newID()
		ct := m.ContentType
		if ct == "" {
			ct = "bytes"
		}
		nm := &nats.Msg{Data: m.Body, Header: nats.Header{}}
		nm.Header.Set(hdrID, id)
		nm.Header.Set(hdrType, ct)
		nm.Header.Set(hdrSent, strconv.FormatInt(now.UnixMilli(), 10))
		var opts []jetstream.PublishOpt
		if m.Delay > 0 {
			// Schedules have second precision: round up, never deliver early.
			at := now.Add(m.Delay).Truncate(time.Second).Add(time.Second)
			nm.Subject = "verge.queue." + q.name + ".d." + id
			opts = append(opts, jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(q.subject))
		} else {
			nm.Subject = q.subject
			opts = append(opts, jetstream.WithMsgID(id))
		}
		f, err := q.s.js.PublishMsgAsync(nm, opts...)
		if err != nil {
			return jsError(q.name, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return jsError(q.name, err)
		case <-ctx.Done():
			return fmt.Errorf("queue %s: send: %w", q.name, ctx.Err())
		}
	}
	return nil
}

// Receive waits for a first message as long as ctx allows. A cluster in transition (a node
// lost, a stream or meta leader being elected: no responders, timeouts) is waited out
// within ctx too, with a backoff, rather than failing the receive.
func (q *jsQueue) Receive(ctx context.Context, n int, wait, lease time.Duration) ([]*Delivery, error) {
	n = min(max(n, 1), MaxBatchSize)
	var out []*Delivery
	backoff := transientBackoff{}
	for len(out) == 0 {
		if q.s.isClosed() {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := q.consumer(ctx, lease)
		if err == nil {
			// Wait for a first message, then up to wait for the rest of the batch.
			err = q.fetch(ctx, c, 1, jsIdleFetch, &out)
		}
		if err != nil {
			if len(out) > 0 || !transient(err) || !backoff.wait(ctx) {
				return out, err
			}
			continue
		}
		backoff = transientBackoff{}
	}
	c, err := q.consumer(ctx, lease)
	if err != nil {
		return out, nil // the messages held are delivered; topping up is best effort
	}
	// Topping the batch up is best effort: the messages held are delivered either way
	// (returned with an error they would wait for their lease to end).
	if len(out) < n {
		_ = q.fetchNoWait(c, n-len(out), &out)
	}
	if len(out) < n && wait > 0 {
		_ = q.fetch(ctx, c, n-len(out), wait, &out)
	}
	return out, nil
}

// transient reports whether err is one a JetStream cluster mends by itself within seconds:
// no responders or a timeout while a leader is elected, a connection being re-established.
func transient(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrNoHeartbeat)
}

// transientBackoff spaces the retries of a transient failure: 50ms doubling to 1s.
type transientBackoff struct{ d time.Duration }

// wait sleeps the next backoff step, or returns false when ctx ends first.
func (b *transientBackoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, 50*time.Millisecond), time.Second)
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fetch pulls up to n messages, waiting up to wait, into out.
func (q *jsQueue) fetch(ctx context.Context, c jetstream.Consumer, n int, wait time.Duration, out *[]*Delivery) error {
	fctx, cancel := context.WithTimeout(ctx, max(wait, 10*time.Millisecond))
	defer cancel()
	b, err := c.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("queue %s: receive: %w", q.name, err)
	}
	if err := q.collect(b, out); err != nil {
		return err
	}
	return ctx.Err()
}

func (q *jsQueue) fetchNoWait(c jetstream.Consumer, n int, out *[]*Delivery) error {
	b, err := c.FetchNoWait(n)
	if err != nil {
		return fmt.Errorf("queue %s: receive: %w", q.name, err)
	}
	return q.collect(b, out)
}

// collect appends a fetched batch's messages to out.
func (q *jsQueue) collect(b jetstream.MessageBatch, out *[]*Delivery) error {
	for m := range b.Messages() {
		d := &Delivery{ID: m.Headers().Get(hdrID), ContentType: m.Headers().Get(hdrType), Body: m.Data(), Attempts: 1, ref: m}
		if ms, err := strconv.ParseInt(m.Headers().Get(hdrSent), 10, 64); err == nil {
			d.Timestamp = time.UnixMilli(ms)
		}
		if md, err := m.Metadata(); err == nil {
			d.Attempts = int(md.NumDelivered)
			if d.Timestamp.IsZero() {
				d.Timestamp = md.Timestamp
			}
		}
		if d.ContentType == "" {
			d.ContentType = "bytes"
		}
		*out = append(*out, d)
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		if len(*out) == 0 {
			return fmt.Errorf("queue %s: receive: %w", q.name, err)
		}
	}
	return nil
}

func jsMsg(d *Delivery) (jetstream.Msg, error) {
	m, ok := d.ref.(jetstream.Msg)
	if !ok {
		return nil, fmt.Errorf("delivery %s is not from this store: %w", d.ID, ErrInvalid)
	}
	return m, nil
}

// Ack acknowledges each message and waits for the server to confirm it recorded the
// acknowledgement (and, with work-queue retention, deleted the message).
func (q *jsQueue) Ack(ctx context.Context, ds []*Delivery) error {
	for _, d := range ds {
		m, err := jsMsg(d)
		if err != nil {
			return err
		}
		if err := m.DoubleAck(ctx); err != nil {
			return fmt.Errorf("queue %s: ack: %w", q.name, err)
		}
	}
	return nil
}

func (q *jsQueue) Retry(ctx context.Context, rs []Retry) error {
	for _, r := range rs {
		m, err := jsMsg(r.D)
		if err != nil {
			return err
		}
		if err := m.NakWithDelay(min(max(r.Delay, 0), MaxDelay)); err != nil {
			return fmt.Errorf("queue %s: retry: %w", q.name, err)
		}
	}
	return nil
}

// Backlog counts the stream's messages: deliverable, delayed and being processed.
func (q *jsQueue) Backlog(ctx context.Context) (int64, error) {
	n, _, err := q.usage(ctx)
	return n, err
}

// usage reads the stream's messages and bytes.
func (q *jsQueue) usage(ctx context.Context) (msgs, bytes int64, _ error) {
	st, err := q.ensure(ctx)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, JetStreamOpTimeout)
	defer cancel()
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("queue %s: %w", q.name, err)
	}
	return int64(info.State.Msgs), int64(info.State.Bytes), nil
}
