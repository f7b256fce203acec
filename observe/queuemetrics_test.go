package observe

import "testing"

func TestQueueStats(t *testing.T) {
	m := NewMetrics()
	m.SetQueueStats(QueueStatsFunc(func(fn func(QueueSample)) {
		fn(QueueSample{Queue: "jobs", Sent: 10, Delivered: 12, Acked: 8, Retried: 3, DeadLettered: 1, Backlog: 2})
		fn(QueueSample{Queue: "other", Backlog: -1})
	}))
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_worker_queue_messages_total{event="sent",queue="jobs"}`:          "10",
		`verge_worker_queue_messages_total{event="delivered",queue="jobs"}`:     "12",
		`verge_worker_queue_messages_total{event="acked",queue="jobs"}`:         "8",
		`verge_worker_queue_messages_total{event="retried",queue="jobs"}`:       "3",
		`verge_worker_queue_messages_total{event="dead_lettered",queue="jobs"}`: "1",
		`verge_worker_queue_backlog{queue="jobs"}`:                              "2",
		`verge_worker_queue_backlog{queue="other"}`:                             "",
		`verge_worker_queue_messages_total{event="sent",queue="other"}`:         "0",
	})
	m.SetQueueStats(nil)
	expectSeries(t, scrape(t, m), map[string]string{`verge_worker_queue_backlog{queue="jobs"}`: ""})
}
