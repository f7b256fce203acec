package observe

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCacheMetrics(t *testing.T) {
	m := NewMetrics()
	m.CacheResult("hit")
	m.CacheResult("hit")
	m.CacheResult("miss")
	m.CacheLockWait(false)
	m.CacheLockWait(true)
	m.CacheBytes("served", 100)
	m.CacheBytes("stored", 40)
	m.CacheEviction("memory")
	m.CacheEviction("disk")
	m.SetCacheUsage(func() (int64, int64) { return 1234, 5678 })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	out := string(b)
	for _, want := range []string{
		`verge_cache_requests_total{result="hit"} 2`,
		`verge_cache_requests_total{result="miss"} 1`,
		`verge_cache_lock_waits_total{outcome="served"} 1`,
		`verge_cache_lock_waits_total{outcome="timeout"} 1`,
		`verge_cache_bytes_total{kind="served"} 100`,
		`verge_cache_bytes_total{kind="stored"} 40`,
		`verge_cache_evictions_total{tier="memory"} 1`,
		`verge_cache_evictions_total{tier="disk"} 1`,
		`verge_cache_memory_bytes 1234`,
		`verge_cache_disk_bytes 5678`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func BenchmarkCacheResult(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for b.Loop() {
		m.CacheResult("hit")
	}
}
