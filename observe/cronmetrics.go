package observe

import "github.com/prometheus/client_golang/prometheus"

// CronSample counts one worker's cron trigger slots (cron.Stats, converted by the binary).
// Counters must not go down.
type CronSample struct {
	// Worker is the worker's name, the worker label.
	Worker string
	// Fired counts the slots this node claimed and ran; Failed those whose claim or
	// scheduled handler failed; Skipped those claimed already (by another node, or before
	// a restart).
	Fired, Failed, Skipped uint64
}

var (
	cronFiredDesc = prometheus.NewDesc("verge_worker_cron_fired_total",
		"Cron trigger slots this node claimed and ran the worker's scheduled handler for.", []string{"worker"}, nil)
	cronFailedDesc = prometheus.NewDesc("verge_worker_cron_failed_total",
		"Cron trigger slots whose claim or scheduled handler failed (an error, a panic, a limit).", []string{"worker"}, nil)
	cronSkippedDesc = prometheus.NewDesc("verge_worker_cron_skipped_total",
		"Cron trigger slots not run here because they were claimed already (by another node of the cluster, or before a restart).", []string{"worker"}, nil)
)

// CronCollector returns the collector of the verge_worker_cron_* metrics; each calls
// samples once per scrape. Register it with Metrics.Register.
func CronCollector(samples func() []CronSample) prometheus.Collector {
	return cronCollector(samples)
}

type cronCollector func() []CronSample

func (c cronCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cronFiredDesc
	ch <- cronFailedDesc
	ch <- cronSkippedDesc
}

func (c cronCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c() {
		ch <- prometheus.MustNewConstMetric(cronFiredDesc, prometheus.CounterValue, float64(s.Fired), s.Worker)
		ch <- prometheus.MustNewConstMetric(cronFailedDesc, prometheus.CounterValue, float64(s.Failed), s.Worker)
		ch <- prometheus.MustNewConstMetric(cronSkippedDesc, prometheus.CounterValue, float64(s.Skipped), s.Worker)
	}
}
