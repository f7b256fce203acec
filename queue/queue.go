// Package queue implements message queues for workers in the manner of Cloudflare Queues:
// producers send messages (alone or in batches, optionally delayed), a consumer receives them
// in batches, acknowledges or retries each, and a message retried more than a consumer's
// retry budget goes to a dead letter queue. Delivery is at least once: a message leaves its
// queue only when its acknowledgement is durable, and one whose consumer died before
// acknowledging it is delivered again.
//
// Store and Queue are the storage interface. SQLiteStore is the embedded backend (one SQLite
// file under the data directory, every send and acknowledgement durable when it returns);
// JetStreamStore keeps each queue in a NATS JetStream stream for a cluster. Consume runs a
// consumer over either.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Limits, as Cloudflare Queues' where it has one.
const (
	// MaxMessageBytes bounds one message's body (128 KiB).
	MaxMessageBytes = 128 << 10
	// MaxSendBatch bounds the messages of one send.
	MaxSendBatch = 100
	// MaxSendBatchBytes bounds the bodies of one send together (256 KiB).
	MaxSendBatchBytes = 256 << 10
	// MaxDelay bounds a send's delivery delay and a retry's delay (12 hours).
	MaxDelay = 12 * time.Hour
	// MaxContentTypeBytes bounds a message's content type.
	MaxContentTypeBytes = 64
	// DefaultMaxBacklog caps the messages waiting in one queue; a send beyond it fails with
	// ErrFull.
	DefaultMaxBacklog = 1_000_000
	// DefaultMaxBytes caps the message bodies stored in one queue (1 GiB; in a cluster on
	// every replica); a send beyond it fails with ErrFull.
	DefaultMaxBytes = 1 << 30
)

// Defaults and bounds of a consumer (ConsumerConfig).
const (
	DefaultMaxBatchSize    = 10
	MaxBatchSize           = 100
	DefaultMaxBatchTimeout = 5 * time.Second
	MaxBatchTimeout        = 60 * time.Second
	DefaultMaxRetries      = 3
	MaxRetries             = 100
	MaxConcurrency         = 16
)

// Errors. ErrInvalid and ErrFull are wrapped with the reason.
var (
	// ErrInvalid: a message or argument breaks the limits.
	ErrInvalid = errors.New("invalid argument")
	// ErrFull: the queue holds DefaultMaxBacklog messages or DefaultMaxBytes of bodies
	// already.
	ErrFull = errors.New("queue full")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("queue store closed")
)

// validName is what a queue name may look like (it is a stream or table key).
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// CheckName validates a queue name: 1 to 63 letters, digits, '_' and '-', not starting
// with '-'.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("queue name %q: use 1 to 63 letters, digits, '_' and '-': %w", name, ErrInvalid)
	}
	return nil
}

// Message is a message to send.
type Message struct {
	// Body is the message's content, at most MaxMessageBytes.
	Body []byte
	// ContentType tells the consumer how to read Body ("json", "text", "bytes" or a MIME
	// type); it is not interpreted. Empty means "bytes".
	ContentType string
	// Delay postpones the first delivery, at most MaxDelay. Zero delivers at once.
	Delay time.Duration
}

// CheckSend validates a batch of messages against the limits.
func CheckSend(msgs []Message) error {
	if len(msgs) == 0 {
		return fmt.Errorf("no messages: %w", ErrInvalid)
	}
	if len(msgs) > MaxSendBatch {
		return fmt.Errorf("%d messages exceed %d per send: %w", len(msgs), MaxSendBatch, ErrInvalid)
	}
	total := 0
	for i := range msgs {
		m := &msgs[i]
		if len(m.Body) > MaxMessageBytes {
			return fmt.Errorf("message %d: %d bytes exceed %d: %w", i, len(m.Body), MaxMessageBytes, ErrInvalid)
		}
		if len(m.ContentType) > MaxContentTypeBytes {
			return fmt.Errorf("message %d: content type longer than %d bytes: %w", i, MaxContentTypeBytes, ErrInvalid)
		}
		if m.Delay < 0 || m.Delay > MaxDelay {
			return fmt.Errorf("message %d: delay %v out of range 0..%v: %w", i, m.Delay, MaxDelay, ErrInvalid)
		}
		total += len(m.Body)
	}
	if total > MaxSendBatchBytes {
		return fmt.Errorf("%d bytes in one send exceed %d: %w", total, MaxSendBatchBytes, ErrInvalid)
	}
	return nil
}

// Delivery is a received message, leased to its consumer until acknowledged or retried (or
// until its lease ends: it is then delivered again).
type Delivery struct {
	// ID identifies the message (32 hex digits), the same on every delivery.
	ID string
	// Timestamp is when the message was sent.
	Timestamp time.Time
	// Body and ContentType are as sent.
	Body        []byte
	ContentType string
	// Attempts counts the deliveries of the message, this one included (1 the first time).
	Attempts int

	// ref locates the message in its backend.
	ref any
}

// Retry is a message to deliver again after Delay.
type Retry struct {
	D     *Delivery
	Delay time.Duration
}

// Store opens queues by name.
type Store interface {
	// Queue returns the queue name, creating it when missing.
	Queue(ctx context.Context, name string) (Queue, error)
	// Close releases the store's resources; the queues' messages stay stored.
	Close() error
}

// Queue is one queue.
type Queue interface {
	// Name returns the queue's name.
	Name() string
	// Send stores msgs (CheckSend's limits apply); they are durable when it returns nil.
	Send(ctx context.Context, msgs []Message) error
	// Receive waits until max messages can be delivered, or until wait has passed since
	// the first one could be, or ctx ends, and leases what it has: until each is acked,
	// retried or its lease (lease long) ends, no other Receive returns it. It returns no
	// messages and ctx's error when ctx ends first.
	Receive(ctx context.Context, max int, wait, lease time.Duration) ([]*Delivery, error)
	// Ack removes delivered messages for good; they are never delivered again once it
	// returns nil.
	Ack(ctx context.Context, ds []*Delivery) error
	// Retry makes delivered messages deliverable again after their delay.
	Retry(ctx context.Context, rs []Retry) error
	// Backlog counts the messages stored, leased ones included.
	Backlog(ctx context.Context) (int64, error)
}

// newID returns a message ID: 32 random hex digits.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
