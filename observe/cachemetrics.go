package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// cacheResults are the outcomes of verge_cache_requests_total (see cache.Metrics).
var cacheResults = [...]string{"hit", "stale", "collapsed", "miss", "revalidated", "bypass"}

// cacheMetrics are the HTTP cache's metrics. Counters are resolved up front so the request
// path does not allocate.
type cacheMetrics struct {
	results      [len(cacheResults)]prometheus.Counter
	lockWaits    [2]prometheus.Counter // waited, timed out
	bytesServed  prometheus.Counter
	bytesStored  prometheus.Counter
	evictMemory  prometheus.Counter
	evictDisk    prometheus.Counter
	usage        atomic.Pointer[func() (memory, disk int64)]
	usageMemory  prometheus.GaugeFunc
	usageDisk    prometheus.GaugeFunc
	requestsVec  *prometheus.CounterVec
	lockVec      *prometheus.CounterVec
	bytesVec     *prometheus.CounterVec
	evictionsVec *prometheus.CounterVec
}

func newCacheMetrics(reg *prometheus.Registry) *cacheMetrics {
	c := &cacheMetrics{}
	c.requestsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_requests_total",
		Help: "Requests through the HTTP cache by result: hit, stale (served stale), collapsed (served from another request's fetch), miss, revalidated (304 from the origin), bypass.",
	}, []string{"result"})
	for i, r := range cacheResults {
		c.results[i] = c.requestsVec.WithLabelValues(r)
	}
	c.lockVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_lock_waits_total",
		Help: "Requests that waited for another request fetching the same key, by outcome (served, timeout).",
	}, []string{"outcome"})
	c.lockWaits[0] = c.lockVec.WithLabelValues("served")
	c.lockWaits[1] = c.lockVec.WithLabelValues("timeout")
	c.bytesVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_bytes_total",
		Help: "Body bytes served from the cache (served) and stored into it (stored).",
	}, []string{"kind"})
	c.bytesServed = c.bytesVec.WithLabelValues("served")
	c.bytesStored = c.bytesVec.WithLabelValues("stored")
	c.evictionsVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "cache_evictions_total",
		Help: "Objects evicted for space, by tier (memory, disk).",
	}, []string{"tier"})
	c.evictMemory = c.evictionsVec.WithLabelValues("memory")
	c.evictDisk = c.evictionsVec.WithLabelValues("disk")
	usage := func(disk bool) func() float64 {
		return func() float64 {
			fn := c.usage.Load()
			if fn == nil {
				return 0
			}
			m, d := (*fn)()
			if disk {
				return float64(d)
			}
			return float64(m)
		}
	}
	c.usageMemory = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "cache_memory_bytes", Help: "Bytes held by the cache's memory tier.",
	}, usage(false))
	c.usageDisk = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "cache_disk_bytes", Help: "Bytes held by the cache's disk tier.",
	}, usage(true))
	reg.MustRegister(c.requestsVec, c.lockVec, c.bytesVec, c.evictionsVec, c.usageMemory, c.usageDisk)
	return c
}

// CacheResult counts a request through the cache by result (cache.Metrics).
func (m *Metrics) CacheResult(result string) {
	for i, r := range cacheResults {
		if r == result {
			m.cacheM.results[i].Inc()
			return
		}
	}
}

// CacheLockWait counts a request that waited on the cache lock (cache.Metrics).
func (m *Metrics) CacheLockWait(timedOut bool) {
	if timedOut {
		m.cacheM.lockWaits[1].Inc()
	} else {
		m.cacheM.lockWaits[0].Inc()
	}
}

// CacheBytes counts body bytes "served" from or "stored" into the cache (cache.Metrics).
func (m *Metrics) CacheBytes(kind string, n int64) {
	switch kind {
	case "served":
		m.cacheM.bytesServed.Add(float64(n))
	case "stored":
		m.cacheM.bytesStored.Add(float64(n))
	}
}

// CacheEviction counts an object evicted from the "memory" or "disk" tier (cache.Metrics).
func (m *Metrics) CacheEviction(tier string) {
	if tier == "disk" {
		m.cacheM.evictDisk.Inc()
	} else {
		m.cacheM.evictMemory.Inc()
	}
}

// SetCacheUsage makes verge_cache_memory_bytes and verge_cache_disk_bytes report fn's
// values (e.g. (*cache.Cache).Usage). Nil reports zero.
func (m *Metrics) SetCacheUsage(fn func() (memory, disk int64)) {
	if fn == nil {
		m.cacheM.usage.Store(nil)
		return
	}
	m.cacheM.usage.Store(&fn)
}
