package purge

import "github.com/prometheus/client_golang/prometheus"

// Stats are the bus's counters since it started.
type Stats struct {
	// Sent counts purges this node stored in the stream.
	Sent uint64
	// Received counts purges of other nodes this node read from the stream.
	Received uint64
	// Applied counts received purges applied to this node's cache.
	Applied uint64
	// PublishFailures counts purges that could not be stored in the stream (applied on this
	// node only); ApplyFailures counts received purges that could not be applied.
	PublishFailures, ApplyFailures uint64
	// Resyncs counts whole-cache drops after purges were missed.
	Resyncs uint64
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	return Stats{Sent: b.sent.Load(), Received: b.received.Load(), Applied: b.applied.Load(),
		PublishFailures: b.publishFailures.Load(), ApplyFailures: b.applyFailures.Load(), Resyncs: b.resyncs.Load()}
}

// Collector returns a Prometheus collector of the bus's counters and position.
func (b *Bus) Collector() prometheus.Collector { return collector{b} }

type collector struct{ b *Bus }

var (
	descSent     = prometheus.NewDesc("verge_cluster_purges_sent_total", "Cache purges this node stored in the cluster's purge stream.", nil, nil)
	descReceived = prometheus.NewDesc("verge_cluster_purges_received_total", "Cache purges of other nodes read from the purge stream.", nil, nil)
	descApplied  = prometheus.NewDesc("verge_cluster_purges_applied_total", "Cache purges of other nodes applied to this node's cache.", nil, nil)
	descFailures = prometheus.NewDesc("verge_cluster_purge_failures_total", "Cache purges that failed: kind=publish (not stored in the stream, applied on this node only) or kind=apply (received, not applied).", []string{"kind"}, nil)
	descResyncs  = prometheus.NewDesc("verge_cluster_purge_resyncs_total", "Whole-cache drops because purges were missed (no longer kept in the stream).", nil, nil)
	descSeq      = prometheus.NewDesc("verge_cluster_purge_sequence", "Stream sequence of the last purge this node applied.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descReceived, descApplied, descFailures, descResyncs, descSeq} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(st.Sent))
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(st.Received))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.CounterValue, float64(st.Applied))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.PublishFailures), "publish")
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.ApplyFailures), "apply")
	ch <- prometheus.MustNewConstMetric(descResyncs, prometheus.CounterValue, float64(st.Resyncs))
	seq, _ := c.b.Applied()
	ch <- prometheus.MustNewConstMetric(descSeq, prometheus.GaugeValue, float64(seq))
}
