package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// BucketSample is a point-in-time view of one object storage bucket bound by workers
// (worker.BucketSample, converted by the binary). Counters must not go down.
type BucketSample struct {
	// Bucket is the bucket's name, the bucket label.
	Bucket string
	// Ops counts operations by kind (get, head, put, delete, list, multipart).
	Ops map[string]uint64
	// Errors counts failed operations.
	Errors uint64
	// BytesIn and BytesOut count body bytes stored and read.
	BytesIn, BytesOut int64
}

// BucketStatsFunc is the source of the verge_worker_bucket_* metrics: it calls fn once per
// bucket, on every scrape.
type BucketStatsFunc func(fn func(BucketSample))

// SetBucketStats makes src the source of the verge_worker_bucket_* metrics; nil removes
// them.
func (m *Metrics) SetBucketStats(src BucketStatsFunc) { m.buckets.src.Store(&src) }

var (
	bucketOpsDesc = prometheus.NewDesc("verge_worker_bucket_operations_total",
		"Object storage operations of workers, by bucket and kind (get, head, put, delete, list, multipart).", []string{"bucket", "kind"}, nil)
	bucketErrorsDesc = prometheus.NewDesc("verge_worker_bucket_errors_total",
		"Failed object storage operations of workers, by bucket.", []string{"bucket"}, nil)
	bucketBytesDesc = prometheus.NewDesc("verge_worker_bucket_bytes_total",
		"Object body bytes workers stored (in) and read (out), by bucket.", []string{"bucket", "direction"}, nil)
)

// bucketCollector exports the samples of the current source on each scrape.
type bucketCollector struct {
	src atomic.Pointer[BucketStatsFunc]
}

// Describe sends the bucket metric descriptors.
func (c *bucketCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bucketOpsDesc
	ch <- bucketErrorsDesc
	ch <- bucketBytesDesc
}

// Collect reads the source once and sends every bucket's series.
func (c *bucketCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Load()
	if p == nil || *p == nil {
		return
	}
	(*p)(func(s BucketSample) {
		for _, k := range sortedKeys(s.Ops) {
			ch <- prometheus.MustNewConstMetric(bucketOpsDesc, prometheus.CounterValue, float64(s.Ops[k]), s.Bucket, k)
		}
		ch <- prometheus.MustNewConstMetric(bucketErrorsDesc, prometheus.CounterValue, float64(s.Errors), s.Bucket)
		ch <- prometheus.MustNewConstMetric(bucketBytesDesc, prometheus.CounterValue, float64(s.BytesIn), s.Bucket, "in")
		ch <- prometheus.MustNewConstMetric(bucketBytesDesc, prometheus.CounterValue, float64(s.BytesOut), s.Bucket, "out")
	})
}
