package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verge-edge/verge/overload"
)

var (
	overloadedDesc = prometheus.NewDesc("verge_overloaded",
		"1 while the process is overloaded (adaptive protection sheds low-priority routes and the busiest clients' new connections), else 0.", nil, nil)
	overloadCPUDesc = prometheus.NewDesc("verge_overload_cpu_ratio",
		"Share of GOMAXPROCS the process used over the latest overload sample.", nil, nil)
	overloadMemDesc = prometheus.NewDesc("verge_overload_memory_bytes",
		"Memory the Go runtime holds (mapped, not returned), at the latest overload sample.", nil, nil)
	overloadDelayDesc = prometheus.NewDesc("verge_overload_queue_delay_seconds",
		"99th percentile of goroutine scheduling delay over the latest overload sample.", nil, nil)
	overloadTransitionsDesc = prometheus.NewDesc("verge_overload_transitions_total",
		"Times the process became overloaded.", nil, nil)
	overloadShedDesc = prometheus.NewDesc("verge_overload_shed_total",
		"Work refused because the process was overloaded, by kind (connection: a new connection of a client already holding overload.conns_per_client; low_priority: a request of a priority: low route).", []string{"kind"}, nil)
)

type overloadCollector struct {
	mon atomic.Pointer[overload.Monitor]
}

// SetOverload makes mon the source of the verge_overload* metrics; nil removes them.
func (m *Metrics) SetOverload(mon *overload.Monitor) { m.overload.mon.Store(mon) }

func (c *overloadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{overloadedDesc, overloadCPUDesc, overloadMemDesc, overloadDelayDesc, overloadTransitionsDesc, overloadShedDesc} {
		ch <- d
	}
}

func (c *overloadCollector) Collect(ch chan<- prometheus.Metric) {
	mon := c.mon.Load()
	if mon == nil {
		return
	}
	s := mon.Last()
	over := 0.0
	if mon.Overloaded() {
		over = 1
	}
	ch <- prometheus.MustNewConstMetric(overloadedDesc, prometheus.GaugeValue, over)
	ch <- prometheus.MustNewConstMetric(overloadCPUDesc, prometheus.GaugeValue, s.CPU)
	ch <- prometheus.MustNewConstMetric(overloadMemDesc, prometheus.GaugeValue, float64(s.Memory))
	ch <- prometheus.MustNewConstMetric(overloadDelayDesc, prometheus.GaugeValue, s.QueueDelay.Seconds())
	ch <- prometheus.MustNewConstMetric(overloadTransitionsDesc, prometheus.CounterValue, float64(mon.Transitions.Load()))
	ch <- prometheus.MustNewConstMetric(overloadShedDesc, prometheus.CounterValue, float64(mon.ShedConns.Load()), "connection")
	ch <- prometheus.MustNewConstMetric(overloadShedDesc, prometheus.CounterValue, float64(mon.ShedLowPriority.Load()), "low_priority")
}
