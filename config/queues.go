package config

import (
	"fmt"
	"regexp"
	"time"
)

// Defaults and bounds of queue consumers (the queue package enforces the same).
const (
	DefaultQueueMaxBatchSize    = 10
	MaxQueueBatchSize           = 100
	DefaultQueueMaxBatchTimeout = 5 * time.Second
	MaxQueueBatchTimeout        = 60 * time.Second
	DefaultQueueMaxRetries      = 3
	MaxQueueRetries             = 100
	MaxQueueRetryDelay          = 12 * time.Hour
	MaxQueueConcurrency         = 16
)

// queueName is what a queue name may look like.
var queueName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// WorkerQueues are a worker's queue bindings: the queues it sends to and those it consumes.
// A queue exists once a worker names it; its messages live under the data directory (or in
// the cluster's JetStream when a cluster is configured).
type WorkerQueues struct {
	// Producers bind queues the worker sends to (sdk.Queue).
	Producers []QueueProducer `yaml:"producers"`
	// Consumers make the worker the consumer of queues (sdk.HandleQueue). A queue has at
	// most one consumer across the workers of a config.
	Consumers []QueueConsumer `yaml:"consumers"`
}

// QueueProducer binds a queue for sending.
type QueueProducer struct {
	// Binding is the name the worker uses (sdk.Queue). Required.
	Binding string `yaml:"binding"`
	// Queue is the queue's name: 1 to 63 letters, digits, '_' and '-'. Required.
	Queue string `yaml:"queue"`
}

// QueueConsumer delivers a queue's messages to the worker in batches.
type QueueConsumer struct {
	// Queue is the queue's name. Required.
	Queue string `yaml:"queue"`
	// MaxBatchSize caps the messages of a batch, 1 to 100. Zero means 10.
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxBatchTimeout is how long a batch waits to fill once it has a message, at most 60s.
	// Unset means 5s; 0s delivers what is there at once.
	MaxBatchTimeout *Duration `yaml:"max_batch_timeout"`
	// MaxRetries is how many times a message whose delivery failed is delivered again
	// before it goes to the dead letter queue, 0 to 100. Unset means 3.
	MaxRetries *int `yaml:"max_retries"`
	// RetryDelay delays retries that ask for no delay of their own (and those of a failed
	// handler), at most 12h. Zero means at once.
	RetryDelay Duration `yaml:"retry_delay"`
	// DeadLetterQueue receives the messages whose retries are spent. Empty means they are
	// dropped, with a log line.
	DeadLetterQueue string `yaml:"dead_letter_queue"`
	// MaxConcurrency caps the batches in flight at once, 1 to 16. Zero means 1.
	MaxConcurrency int `yaml:"max_concurrency"`
}

// setQueueDefaults fills in a worker's consumer defaults.
func setQueueDefaults(w *Worker) {
	for j := range w.Queues.Consumers {
		c := &w.Queues.Consumers[j]
		if c.MaxBatchSize == 0 {
			c.MaxBatchSize = DefaultQueueMaxBatchSize
		}
		if c.MaxBatchTimeout == nil {
			d := Duration(DefaultQueueMaxBatchTimeout)
			c.MaxBatchTimeout = &d
		}
		if c.MaxRetries == nil {
			n := DefaultQueueMaxRetries
			c.MaxRetries = &n
		}
		if c.MaxConcurrency == 0 {
			c.MaxConcurrency = 1
		}
	}
}

// workerQueues validates worker w's queues (p is its path); consumed maps each queue
// consumed so far to the path of its consumer, across workers.
func (v *validator) workerQueues(p string, w *Worker, bind func(q, b string), consumed map[string]string) {
	for j, pr := range w.Queues.Producers {
		q := fmt.Sprintf("%s.queues.producers[%d]", p, j)
		bind(q+".binding", pr.Binding)
		v.queueName(q+".queue", pr.Queue)
	}
	for j := range w.Queues.Consumers {
		c := &w.Queues.Consumers[j]
		q := fmt.Sprintf("%s.queues.consumers[%d]", p, j)
		if v.queueName(q+".queue", c.Queue) {
			if prev, ok := consumed[c.Queue]; ok {
				v.errf(q+".queue", "queue %q already has a consumer (%s): a queue has one", c.Queue, prev)
			} else {
				consumed[c.Queue] = q
			}
		}
		if c.MaxBatchSize < 1 || c.MaxBatchSize > MaxQueueBatchSize {
			v.errf(q+".max_batch_size", "max_batch_size %d out of range 1..%d", c.MaxBatchSize, MaxQueueBatchSize)
		}
		if t := c.MaxBatchTimeout; t != nil && (*t < 0 || t.Std() > MaxQueueBatchTimeout) {
			v.errf(q+".max_batch_timeout", "max_batch_timeout %v out of range 0s..%v", *t, MaxQueueBatchTimeout)
		}
		if n := c.MaxRetries; n != nil && (*n < 0 || *n > MaxQueueRetries) {
			v.errf(q+".max_retries", "max_retries %d out of range 0..%d", *n, MaxQueueRetries)
		}
		if c.RetryDelay < 0 || c.RetryDelay.Std() > MaxQueueRetryDelay {
			v.errf(q+".retry_delay", "retry_delay %v out of range 0s..%v", c.RetryDelay, MaxQueueRetryDelay)
		}
		if c.MaxConcurrency < 1 || c.MaxConcurrency > MaxQueueConcurrency {
			v.errf(q+".max_concurrency", "max_concurrency %d out of range 1..%d", c.MaxConcurrency, MaxQueueConcurrency)
		}
		if c.DeadLetterQueue != "" && v.queueName(q+".dead_letter_queue", c.DeadLetterQueue) && c.DeadLetterQueue == c.Queue {
			v.errf(q+".dead_letter_queue", "dead_letter_queue %q is the queue itself", c.DeadLetterQueue)
		}
	}
}

// queueName validates a queue name at path and reports whether it is valid.
func (v *validator) queueName(path, name string) bool {
	switch {
	case name == "":
		v.errf(path, "queue is required")
	case !queueName.MatchString(name):
		v.errf(path, "queue %q: use 1 to 63 letters, digits, '_' and '-', not starting with '-'", name)
	default:
		return true
	}
	return false
}
