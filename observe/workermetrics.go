package observe

import (
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WorkerSample is a point-in-time view of one worker (worker.Stats, converted by the
// binary). Counters are totals since the worker was deployed; they must not go down.
type WorkerSample struct {
	// Worker is the worker's name, the worker label.
	Worker string
	// Invocations counts guest invocations by kind (fetch, object, alarm).
	Invocations map[string]uint64
	// Errors counts failed invocations by kind (crashed, cpu_limit, wall_limit,
	// no_response, overloaded, unavailable, memory_limit).
	Errors map[string]uint64
	// CPU is the guest CPU time of all invocations.
	CPU time.Duration
	// IdleInstances and BusyInstances count the pooled instances waiting for and running a
	// request.
	IdleInstances, BusyInstances int
	// LiveObjects counts the live Durable Objects.
	LiveObjects int
	// ObjectInstances counts the instances hosting the live Durable Objects.
	ObjectInstances int
	// Evictions counts Durable Objects evicted.
	Evictions uint64
	// Memory is the linear memory the worker's instances hold, in bytes.
	Memory int64
	// WebSockets counts the worker's open WebSockets; WebSocketMessagesIn and
	// WebSocketMessagesOut count the messages received from and sent to clients.
	WebSockets                                int
	WebSocketMessagesIn, WebSocketMessagesOut uint64
	// CacheOps counts Cache API operations by "op_result" (match_hit, match_miss,
	// put_stored, put_not_stored, put_refused, delete_deleted, delete_absent).
	CacheOps map[string]uint64
}

// WorkerStats is a source of worker samples. EachWorker calls fn once per worker; it is
// called on every scrape, from the scraping goroutine, and must not block for long.
type WorkerStats interface {
	EachWorker(fn func(WorkerSample))
}

// WorkerStatsFunc adapts a function to WorkerStats.
type WorkerStatsFunc func(fn func(WorkerSample))

// EachWorker calls f(fn).
func (f WorkerStatsFunc) EachWorker(fn func(WorkerSample)) { f(fn) }

// SetWorkerStats makes src the source of the verge_worker_* metrics; nil removes them.
func (m *Metrics) SetWorkerStats(src WorkerStats) {
	if src == nil {
		m.workers.src.Store(nil)
		return
	}
	m.workers.src.Store(&src)
}

var (
	workerInvocationsDesc = prometheus.NewDesc("verge_worker_invocations_total",
		"Worker invocations run, by worker and kind (fetch, object: a Durable Object request, alarm).", []string{"worker", "kind"}, nil)
	workerErrorsDesc = prometheus.NewDesc("verge_worker_errors_total",
		"Failed worker invocations, by worker and kind (crashed, cpu_limit, wall_limit, no_response, overloaded, unavailable, memory_limit).", []string{"worker", "kind"}, nil)
	workerCPUDesc = prometheus.NewDesc("verge_worker_cpu_seconds_total",
		"Guest CPU time of the worker's invocations (what its CPU time limit bounds).", []string{"worker"}, nil)
	workerInstancesDesc = prometheus.NewDesc("verge_worker_instances",
		"Pooled instances of the worker's current version, by state (idle, busy).", []string{"worker", "state"}, nil)
	workerObjectsDesc = prometheus.NewDesc("verge_worker_durable_objects",
		"Live Durable Objects of the worker.", []string{"worker"}, nil)
	workerObjectInstancesDesc = prometheus.NewDesc("verge_worker_object_instances",
		"Instances hosting the worker's live Durable Objects (several objects share one).", []string{"worker"}, nil)
	workerEvictionsDesc = prometheus.NewDesc("verge_worker_durable_object_evictions_total",
		"Durable Objects of the worker evicted (idle, over the live cap, or at shutdown).", []string{"worker"}, nil)
	workerMemoryDesc = prometheus.NewDesc("verge_worker_memory_bytes",
		"Linear memory held by the worker's instances.", []string{"worker"}, nil)
	workerWebSocketsDesc = prometheus.NewDesc("verge_worker_websocket_open",
		"Open WebSockets of the worker: held by its requests and held by the host for its Durable Objects.", []string{"worker"}, nil)
	workerWebSocketMessagesDesc = prometheus.NewDesc("verge_worker_websocket_messages_total",
		"WebSocket messages of the worker, by direction (in: from clients, out: to clients).", []string{"worker", "direction"}, nil)
	workerCacheOpsDesc = prometheus.NewDesc("verge_worker_cache_operations_total",
		"Cache API operations of the worker, by operation (match, put, delete) and result (hit, miss, stored, not_stored, refused, deleted, absent).", []string{"worker", "op", "result"}, nil)
)

// workerCollector exports the samples of the current WorkerStats source on each scrape.
type workerCollector struct {
	src atomic.Pointer[WorkerStats]
}

// Describe sends the worker metric descriptors.
func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workerInvocationsDesc, workerErrorsDesc, workerCPUDesc,
		workerInstancesDesc, workerObjectsDesc, workerObjectInstancesDesc, workerEvictionsDesc, workerMemoryDesc,
		workerWebSocketsDesc, workerWebSocketMessagesDesc, workerCacheOpsDesc} {
		ch <- d
	}
}

// Collect reads the source once and sends every worker's series.
func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil {
		return
	}
	(*p).EachWorker(func(s WorkerSample) {
		w := s.Worker
		for _, k := range sortedKeys(s.Invocations) {
			ch <- prometheus.MustNewConstMetric(workerInvocationsDesc, prometheus.CounterValue, float64(s.Invocations[k]), w, k)
		}
		for _, k := range sortedKeys(s.Errors) {
			ch <- prometheus.MustNewConstMetric(workerErrorsDesc, prometheus.CounterValue, float64(s.Errors[k]), w, k)
		}
		ch <- prometheus.MustNewConstMetric(workerCPUDesc, prometheus.CounterValue, s.CPU.Seconds(), w)
		ch <- prometheus.MustNewConstMetric(workerInstancesDesc, prometheus.GaugeValue, float64(s.IdleInstances), w, "idle")
		ch <- prometheus.MustNewConstMetric(workerInstancesDesc, prometheus.GaugeValue, float64(s.BusyInstances), w, "busy")
		ch <- prometheus.MustNewConstMetric(workerObjectsDesc, prometheus.GaugeValue, float64(s.LiveObjects), w)
		ch <- prometheus.MustNewConstMetric(workerObjectInstancesDesc, prometheus.GaugeValue, float64(s.ObjectInstances), w)
		ch <- prometheus.MustNewConstMetric(workerEvictionsDesc, prometheus.CounterValue, float64(s.Evictions), w)
		ch <- prometheus.MustNewConstMetric(workerMemoryDesc, prometheus.GaugeValue, float64(s.Memory), w)
		ch <- prometheus.MustNewConstMetric(workerWebSocketsDesc, prometheus.GaugeValue, float64(s.WebSockets), w)
		ch <- prometheus.MustNewConstMetric(workerWebSocketMessagesDesc, prometheus.CounterValue, float64(s.WebSocketMessagesIn), w, "in")
		ch <- prometheus.MustNewConstMetric(workerWebSocketMessagesDesc, prometheus.CounterValue, float64(s.WebSocketMessagesOut), w, "out")
		for _, k := range sortedKeys(s.CacheOps) {
			op, result, _ := strings.Cut(k, "_")
			ch <- prometheus.MustNewConstMetric(workerCacheOpsDesc, prometheus.CounterValue, float64(s.CacheOps[k]), w, op, result)
		}
	})
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
