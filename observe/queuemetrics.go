package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueSample is a point-in-time view of one worker queue (worker.QueueStats, converted by
// the binary). Counters are totals since the queue was first used by this process.
type QueueSample struct {
	// Queue is the queue's name, the queue label.
	Queue string
	// Sent, Delivered, Acked, Retried and DeadLettered count messages by event.
	Sent, Delivered, Acked, Retried, DeadLettered int64
	// Backlog counts the messages stored (waiting or being processed); negative when
	// unknown, and then not exported.
	Backlog int64
}

// QueueStats is a source of queue samples, called on every scrape.
type QueueStats interface {
	EachQueue(fn func(QueueSample))
}

// QueueStatsFunc adapts a function to QueueStats.
type QueueStatsFunc func(fn func(QueueSample))

// EachQueue calls f(fn).
func (f QueueStatsFunc) EachQueue(fn func(QueueSample)) { f(fn) }

// SetQueueStats makes src the source of the verge_worker_queue_* metrics; nil removes them.
func (m *Metrics) SetQueueStats(src QueueStats) {
	if src == nil {
		m.queues.src.Store(nil)
		return
	}
	m.queues.src.Store(&src)
}

var (
	queueMessagesDesc = prometheus.NewDesc("verge_worker_queue_messages_total",
		"Worker queue messages by queue and event (sent, delivered: each delivery to the consumer, acked, retried, dead_lettered: moved to the dead letter queue or dropped after the last retry).",
		[]string{"queue", "event"}, nil)
	queueBacklogDesc = prometheus.NewDesc("verge_worker_queue_backlog",
		"Messages stored in the queue: waiting, delayed or being processed.", []string{"queue"}, nil)
)

// queueCollector exports the samples of the current QueueStats source on each scrape.
type queueCollector struct {
	src atomic.Pointer[QueueStats]
}

// Describe sends the queue metric descriptors.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMessagesDesc
	ch <- queueBacklogDesc
}

// Collect reads the source once and sends every queue's series.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil {
		return
	}
	(*p).EachQueue(func(s QueueSample) {
		for _, e := range []struct {
			name string
			n    int64
		}{{"sent", s.Sent}, {"delivered", s.Delivered}, {"acked", s.Acked}, {"retried", s.Retried}, {"dead_lettered", s.DeadLettered}} {
			ch <- prometheus.MustNewConstMetric(queueMessagesDesc, prometheus.CounterValue, float64(e.n), s.Queue, e.name)
		}
		if s.Backlog >= 0 {
			ch <- prometheus.MustNewConstMetric(queueBacklogDesc, prometheus.GaugeValue, float64(s.Backlog), s.Queue)
		}
	})
}
