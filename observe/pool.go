package observe

import (
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verge-edge/verge/upstream"
)

// PoolSample is a point-in-time view of the upstream connections to one backend address.
// Counters are totals since the source started; they must not go down.
type PoolSample struct {
	// Address is the backend's host:port, the addr label. Samples with the same Address (for
	// example one pool per protocol) are summed.
	Address string
	// Dialed counts connections opened to the backend.
	Dialed uint64
	// DialErrors counts failed connection attempts (refused, timed out, TLS handshake).
	DialErrors uint64
	// Requests counts requests sent to the backend.
	Requests uint64
	// Reused counts the requests among Requests that went on an already open connection
	// (a pooled HTTP/1.1 connection or an existing HTTP/2 connection).
	Reused uint64
	// Idle is the number of open connections waiting in the pool for a request.
	Idle int
	// Active is the number of open connections carrying at least one request.
	Active int
}

// PoolStats is a source of connection-pool samples, typically an adapter over the upstream
// transport's statistics. EachPool calls fn once per pool; it is called on every scrape, from
// the scraping goroutine, and must not block for long.
type PoolStats interface {
	EachPool(fn func(PoolSample))
}

// PoolStatsFunc adapts a function to PoolStats.
type PoolStatsFunc func(fn func(PoolSample))

// EachPool calls f(fn).
func (f PoolStatsFunc) EachPool(fn func(PoolSample)) { f(fn) }

// SetPoolStats makes src the source of the verge_upstream_pool_* metrics; nil removes them.
// The source is read on every scrape, so it may be swapped at any time (on reload, say).
func (m *Metrics) SetPoolStats(src PoolStats) {
	if src == nil {
		m.pools.src.Store(nil)
		return
	}
	m.pools.src.Store(&src)
}

var (
	poolDialedDesc = prometheus.NewDesc("verge_upstream_pool_connections_dialed_total",
		"Connections opened to the backend.", []string{"addr"}, nil)
	poolDialErrDesc = prometheus.NewDesc("verge_upstream_pool_dial_errors_total",
		"Failed connection attempts to the backend (refused, timed out, TLS handshake).", []string{"addr"}, nil)
	poolReqDesc = prometheus.NewDesc("verge_upstream_pool_requests_total",
		"Requests sent to the backend.", []string{"addr"}, nil)
	poolReusedDesc = prometheus.NewDesc("verge_upstream_pool_reused_requests_total",
		"Requests sent to the backend on an already open connection.", []string{"addr"}, nil)
	poolRatioDesc = prometheus.NewDesc("verge_upstream_pool_reuse_ratio",
		"Share of requests to the backend that reused an open connection, since start (0 before the first request).", []string{"addr"}, nil)
	poolIdleDesc = prometheus.NewDesc("verge_upstream_pool_idle_connections",
		"Open connections to the backend waiting in the pool.", []string{"addr"}, nil)
	poolActiveDesc = prometheus.NewDesc("verge_upstream_pool_active_connections",
		"Open connections to the backend carrying a request.", []string{"addr"}, nil)
)

// poolCollector exports the samples of the current PoolStats source on each scrape.
type poolCollector struct {
	src atomic.Pointer[PoolStats]
}

// Describe sends the pool metric descriptors.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolDialedDesc, poolDialErrDesc, poolReqDesc, poolReusedDesc,
		poolRatioDesc, poolIdleDesc, poolActiveDesc} {
		ch <- d
	}
}

// Collect reads the source once and sends one series per address and metric.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil {
		return
	}
	byAddr := make(map[string]*PoolSample)
	(*p).EachPool(func(s PoolSample) {
		a := byAddr[s.Address]
		if a == nil {
			a = &PoolSample{Address: s.Address}
			byAddr[s.Address] = a
		}
		a.Dialed += s.Dialed
		a.DialErrors += s.DialErrors
		a.Requests += s.Requests
		a.Reused += s.Reused
		a.Idle += s.Idle
		a.Active += s.Active
	})
	addrs := make([]string, 0, len(byAddr))
	for a := range byAddr {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		s := byAddr[addr]
		ratio := 0.0
		if s.Requests > 0 {
			ratio = float64(s.Reused) / float64(s.Requests)
		}
		ch <- prometheus.MustNewConstMetric(poolDialedDesc, prometheus.CounterValue, float64(s.Dialed), addr)
		ch <- prometheus.MustNewConstMetric(poolDialErrDesc, prometheus.CounterValue, float64(s.DialErrors), addr)
		ch <- prometheus.MustNewConstMetric(poolReqDesc, prometheus.CounterValue, float64(s.Requests), addr)
		ch <- prometheus.MustNewConstMetric(poolReusedDesc, prometheus.CounterValue, float64(s.Reused), addr)
		ch <- prometheus.MustNewConstMetric(poolRatioDesc, prometheus.GaugeValue, ratio, addr)
		ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(s.Idle), addr)
		ch <- prometheus.MustNewConstMetric(poolActiveDesc, prometheus.GaugeValue, float64(s.Active), addr)
	}
}

// KeyStatser is what PoolStatsFrom reads: *upstream.Pool (Transport.Pool()) implements it.
type KeyStatser interface {
	KeyStats() map[upstream.PoolKey]upstream.Stats
}

var _ KeyStatser = (*upstream.Pool)(nil)

// PoolStatsFrom adapts an upstream connection pool to PoolStats, one sample per pool key:
//
//	metrics.SetPoolStats(observe.PoolStatsFrom(transport.Pool()))
//
// Active counts HTTP/1 connections carrying a request plus open HTTP/2 connections. The pool
// forgets a key unused for longer than its idle timeout, and its counters with it, so a
// backend idle that long restarts its counters from zero (Prometheus' rate() treats that as a
// counter reset).
func PoolStatsFrom(p KeyStatser) PoolStats {
	return PoolStatsFunc(func(fn func(PoolSample)) {
		for k, s := range p.KeyStats() {
			fn(PoolSample{
				Address:    k.Address,
				Dialed:     s.Dials,
				DialErrors: s.DialErrors,
				Requests:   s.Requests,
				Reused:     s.ReusedRequests,
				Idle:       s.IdleConns,
				Active:     s.ActiveConns + s.H2Conns,
			})
		}
	})
}
