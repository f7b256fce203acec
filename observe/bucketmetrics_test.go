package observe

import "testing"

func TestBucketStats(t *testing.T) {
	m := NewMetrics()
	if got := scrape(t, m); got[`verge_worker_bucket_errors_total{bucket="files"}`] != "" {
		t.Fatal("bucket series present before SetBucketStats")
	}
	m.SetBucketStats(func(fn func(BucketSample)) {
		fn(BucketSample{Bucket: "files", Ops: map[string]uint64{"get": 3, "put": 2}, Errors: 1, BytesIn: 10, BytesOut: 20})
	})
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_worker_bucket_operations_total{bucket="files",kind="get"}`: "3",
		`verge_worker_bucket_operations_total{bucket="files",kind="put"}`: "2",
		`verge_worker_bucket_errors_total{bucket="files"}`:                "1",
		`verge_worker_bucket_bytes_total{bucket="files",direction="in"}`:  "10",
		`verge_worker_bucket_bytes_total{bucket="files",direction="out"}`: "20",
	})
	m.SetBucketStats(nil)
	expectSeries(t, scrape(t, m), map[string]string{`verge_worker_bucket_errors_total{bucket="files"}`: ""})
}
