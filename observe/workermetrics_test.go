package observe

import (
	"testing"
	"time"
)

func TestWorkerStats(t *testing.T) {
	m := NewMetrics()
	if got := scrape(t, m); got[`verge_worker_cpu_seconds_total{worker="app"}`] != "" {
		t.Fatal("worker series present before SetWorkerStats")
	}
	m.SetWorkerStats(WorkerStatsFunc(func(fn func(WorkerSample)) {
		fn(WorkerSample{
			Worker:        "app",
			Invocations:   map[string]uint64{"fetch": 7, "object": 2, "alarm": 0},
			Errors:        map[string]uint64{"crashed": 1, "cpu_limit": 3},
			CPU:           1500 * time.Millisecond,
			IdleInstances: 2, BusyInstances: 1, LiveObjects: 4, Evictions: 5, Memory: 1 << 20,
			WebSockets: 9, WebSocketMessagesIn: 11, WebSocketMessagesOut: 13,
		})
	}))
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_worker_invocations_total{kind="fetch",worker="app"}`:           "7",
		`verge_worker_invocations_total{kind="object",worker="app"}`:          "2",
		`verge_worker_invocations_total{kind="alarm",worker="app"}`:           "0",
		`verge_worker_errors_total{kind="crashed",worker="app"}`:              "1",
		`verge_worker_errors_total{kind="cpu_limit",worker="app"}`:            "3",
		`verge_worker_cpu_seconds_total{worker="app"}`:                        "1.5",
		`verge_worker_instances{state="idle",worker="app"}`:                   "2",
		`verge_worker_instances{state="busy",worker="app"}`:                   "1",
		`verge_worker_durable_objects{worker="app"}`:                          "4",
		`verge_worker_durable_object_evictions_total{worker="app"}`:           "5",
		`verge_worker_memory_bytes{worker="app"}`:                             "1.048576e+06",
		`verge_worker_websocket_open{worker="app"}`:                           "9",
		`verge_worker_websocket_messages_total{direction="in",worker="app"}`:  "11",
		`verge_worker_websocket_messages_total{direction="out",worker="app"}`: "13",
	})
	m.SetWorkerStats(nil)
	expectSeries(t, scrape(t, m), map[string]string{`verge_worker_cpu_seconds_total{worker="app"}`: ""})
}
