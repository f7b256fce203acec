package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// RateLimitSample is one rate-limit rule's numbers at a scrape.
type RateLimitSample struct {
	// Rule is the rule's name; Mode is enforce or log.
	Rule, Mode string
	// Limited counts the requests the rule refused (in log mode: would have refused), by
	// route. Totals since the rule was created; they must not go down.
	Limited map[string]uint64
	// Keys estimates the distinct keys the rule counts in its current period.
	Keys int
}

// RateLimitStats is a source of rate-limit samples, read on every scrape.
type RateLimitStats interface {
	EachRateLimit(fn func(RateLimitSample))
}

// RateLimitStatsFunc adapts a function to RateLimitStats.
type RateLimitStatsFunc func(fn func(RateLimitSample))

// EachRateLimit calls f(fn).
func (f RateLimitStatsFunc) EachRateLimit(fn func(RateLimitSample)) { f(fn) }

var (
	rateLimitedDesc = prometheus.NewDesc("verge_rate_limited_total",
		"Requests a rate-limit rule refused (mode enforce) or would have refused (mode log), by rule, route and mode.", []string{"rule", "route", "mode"}, nil)
	rateLimitKeysDesc = prometheus.NewDesc("verge_rate_limit_keys",
		"Distinct keys a rate-limit rule counts in its current period (an estimate; at most the rule's sketch width).", []string{"rule"}, nil)
)

type rateLimitCollector struct {
	src atomic.Pointer[RateLimitStats]
}

// SetRateLimitStats makes src the source of the verge_rate_limit* metrics; nil removes them.
func (m *Metrics) SetRateLimitStats(src RateLimitStats) {
	if src == nil {
		m.rateLimits.src.Store(nil)
		return
	}
	m.rateLimits.src.Store(&src)
}

func (c *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rateLimitedDesc
	ch <- rateLimitKeysDesc
}

func (c *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil {
		return
	}
	(*p).EachRateLimit(func(s RateLimitSample) {
		for _, route := range sortedKeys(s.Limited) {
			ch <- prometheus.MustNewConstMetric(rateLimitedDesc, prometheus.CounterValue, float64(s.Limited[route]), s.Rule, route, s.Mode)
		}
		ch <- prometheus.MustNewConstMetric(rateLimitKeysDesc, prometheus.GaugeValue, float64(s.Keys), s.Rule)
	})
}
