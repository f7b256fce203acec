package sdk

import (
	"errors"
	"fmt"
	"time"

	"github.com/verge-edge/verge/internal/workerabi"
)

// Queue limits, as the host enforces them.
const (
	// MaxQueueMessageBytes bounds one message's body (128 KiB).
	MaxQueueMessageBytes = 128 << 10
	// MaxQueueSendBatch bounds the messages of one SendBatch (their bodies together are at
	// most 256 KiB).
	MaxQueueSendBatch = 100
	// MaxQueueDelay bounds a send's and a retry's delay.
	MaxQueueDelay = 12 * time.Hour
)

// QueueProducer sends messages to a queue bound to the worker, as returned by Queue.
type QueueProducer struct{ binding string }

// Queue returns the queue bound to the worker under binding (the worker configuration's
// queues.producers). Sending through a name the configuration does not bind fails with
// ErrUnavailable.
func Queue(binding string) *QueueProducer { return &QueueProducer{binding: binding} }

// QueueSendOptions are the optional parts of a send.
type QueueSendOptions struct {
	// ContentType tells the consumer how to read the body ("json", "text", "bytes", or a
	// MIME type); it is passed along, not interpreted. Empty means "bytes".
	ContentType string
	// Delay postpones the message's first delivery, in whole seconds, at most 12 hours.
	// Zero delivers it at once.
	Delay time.Duration
}

// MessageSendRequest is one message of a SendBatch.
type MessageSendRequest struct {
	// Body is the message, at most 128 KiB.
	Body []byte
	// ContentType and Delay are as in QueueSendOptions.
	ContentType string
	Delay       time.Duration
}

// Send sends one message. It is stored durably when Send returns nil: it will be delivered
// to the queue's consumer at least once.
func (q *QueueProducer) Send(body []byte, o *QueueSendOptions) error {
	m := MessageSendRequest{Body: body}
	if o != nil {
		m.ContentType, m.Delay = o.ContentType, o.Delay
	}
	return q.SendBatch([]MessageSendRequest{m})
}

// SendBatch sends up to 100 messages (256 KiB together) in one durable write: all of them
// are stored when it returns nil, none when it fails.
func (q *QueueProducer) SendBatch(msgs []MessageSendRequest) error {
	var e workerabi.Encoder
	e.Str(q.binding)
	e.U32(uint32(len(msgs)))
	for _, m := range msgs {
		if m.Delay < 0 || m.Delay > MaxQueueDelay {
			return &Error{Code: ErrInvalid, Message: fmt.Sprintf("queue: delay %v out of range 0..12h", m.Delay)}
		}
		e.Bytes(m.Body)
		e.Str(m.ContentType)
		e.U32(uint32(m.Delay / time.Second))
	}
	_, err := rawCall(workerabi.OpQueueSend, e.B)
	return err
}

// MessageBatch is a batch of messages delivered to the queue handler.
type MessageBatch struct {
	// Queue is the queue's name.
	Queue string
	// Messages are the batch's messages, oldest first.
	Messages []*QueueMessage
}

// QueueMessage is a delivered message.
type QueueMessage struct {
	// ID identifies the message; a message delivered again keeps its ID.
	ID string
	// Timestamp is when the message was sent.
	Timestamp time.Time
	// Body and ContentType are as sent.
	Body        []byte
	ContentType string
	// Attempts counts the message's deliveries, this one included (1 the first time).
	Attempts int

	index int
}

// Ack acknowledges the message now: when it returns nil the message is removed for good
// and never delivered again, whatever the handler does next.
func (m *QueueMessage) Ack() error {
	return queueOutcome(workerabi.OpQueueAck, false, []int{m.index}, 0)
}

// Retry asks for the message to be delivered again after delay (whole milliseconds, at
// most 12 hours; negative means the consumer's retry_delay) once the handler returns, or
// to go to the dead letter queue when its retries are spent. A message acknowledged
// already stays acknowledged.
func (m *QueueMessage) Retry(delay time.Duration) error {
	return queueOutcome(workerabi.OpQueueRetry, false, []int{m.index}, delay)
}

// AckAll acknowledges every message of the batch now, in one durable write.
func (b *MessageBatch) AckAll() error { return queueOutcome(workerabi.OpQueueAck, true, nil, 0) }

// RetryAll asks for every message of the batch not acknowledged yet to be delivered again
// after delay (negative: the consumer's retry_delay).
func (b *MessageBatch) RetryAll(delay time.Duration) error {
	return queueOutcome(workerabi.OpQueueRetry, true, nil, delay)
}

func queueOutcome(op uint32, all bool, idx []int, delay time.Duration) error {
	var e workerabi.Encoder
	e.Bool(all)
	e.U32(uint32(len(idx)))
	for _, i := range idx {
		e.U32(uint32(i))
	}
	if op == workerabi.OpQueueRetry {
		if delay > MaxQueueDelay {
			return &Error{Code: ErrInvalid, Message: fmt.Sprintf("queue: retry delay %v exceeds 12h", delay)}
		}
		ms := int64(-1)
		if delay >= 0 {
			ms = delay.Milliseconds()
		}
		e.I64(ms)
	}
	_, err := rawCall(op, e.B)
	return err
}

// QueueHandler processes a batch of queue messages. Returning nil acknowledges the
// messages it neither acknowledged nor retried; returning an error (or panicking, or
// exceeding a limit) retries them after the consumer's retry_delay.
type QueueHandler func(b *MessageBatch) error

var queueHandler QueueHandler

// HandleQueue registers the worker's queue handler, which receives the batches of the
// queues the worker's configuration makes it consume (queues.consumers). Call it from an
// init function.
func HandleQueue(h QueueHandler) { queueHandler = h }

// errNoQueueHandler fails a queue invocation of a worker without a handler.
var errNoQueueHandler = errors.New("no queue handler registered (call sdk.HandleQueue in init)")

// runQueue runs a KindQueue invocation.
func runQueue() error {
	if queueHandler == nil {
		return errNoQueueHandler
	}
	res, err := rawCall(workerabi.OpQueueBatch, nil)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	b := &MessageBatch{Queue: d.Str()}
	n := d.Count(24)
	b.Messages = make([]*QueueMessage, 0, n)
	for i := range n {
		m := &QueueMessage{ID: d.Str(), index: i}
		m.Timestamp = time.UnixMilli(d.I64())
		m.Attempts = int(d.U32())
		m.ContentType = d.Str()
		m.Body = cloneBytes(&d)
		b.Messages = append(b.Messages, m)
	}
	if d.Err != nil {
		return d.Err
	}
	return queueHandler(b)
}
