package observe

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestTimelineRates(t *testing.T) {
	m := NewMetrics()
	tl := m.NewTimeline(time.Second, 3*time.Second)
	t0 := time.Unix(1000, 0)
	tl.Sample(t0) // the baseline: no point
	if pts, seq := tl.Since(0); len(pts) != 0 || seq != 0 {
		t.Fatalf("after the first sample: %d points, seq %d", len(pts), seq)
	}
	changed := tl.Changed()
	for i := range 100 {
		status := 200
		if i < 10 {
			status = 502
		} else if i < 15 {
			status = 404
		}
		m.ObserveRequest("api", "HTTP/1.1", status, 20*time.Millisecond)
	}
	m.ObserveRequest("static", "HTTP/2.0", 200, 2*time.Second)
	m.ObserveRequest("static", "HTTP/2.0", 200, 2*time.Second)
	m.ObserveTraffic("public", "api", 200, 100, 4000)
	m.ObserveTraffic("public", "api", 503, 0, 0)
	m.ObserveTraffic("internal", "static", 404, 0, 10)
	m.ObserveUpstream("web", "127.0.0.1:1", 3*time.Millisecond, false)
	m.ObserveUpstream("web", "127.0.0.1:1", 0, true)
	m.CacheResult("hit")
	m.CacheResult("hit")
	m.CacheResult("hit")
	m.CacheResult("miss")
	m.CacheResult("bypass")
	m.SetCacheUsage(func() (int64, int64) { return 1 << 20, 0 })
	tl.Sample(t0.Add(2 * time.Second))
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by a new point")
	}
	pts, seq := tl.Since(0)
	if len(pts) != 1 || seq != 1 {
		t.Fatalf("%d points, seq %d", len(pts), seq)
	}
	p := pts[0]
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.05+1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("total req/s", p.Total.Requests, 51)
	near("api req/s", p.Routes["api"].Requests, 50)
	near("api err/s", p.Routes["api"].Errors, 5)
	near("api 4xx/s", p.Routes["api"].ClientErrors, 2.5)
	near("api out B/s", p.Routes["api"].BytesOut, 2000)
	near("api in B/s", p.Routes["api"].BytesIn, 50)
	if p50 := p.Routes["api"].P50; p50 < 10 || p50 > 25 {
		t.Errorf("api p50 = %v ms, want within the 10..25 ms bucket", p50)
	}
	if p99 := p.Total.P99; p99 < 1000 || p99 > 2500 {
		t.Errorf("total p99 = %v ms, want within the 1..2.5 s bucket", p99)
	}
	near("public req/s", p.Listeners["public"].Requests, 1)
	near("public err/s", p.Listeners["public"].Errors, 0.5)
	near("public out B/s", p.Listeners["public"].BytesOut, 2000)
	near("internal 4xx/s", p.Listeners["internal"].ClientErrors, 0.5)
	near("static out B/s", p.Routes["static"].BytesOut, 5)
	near("HTTP/2 req/s", p.Protos["HTTP/2.0"].Requests, 1)
	u := p.Upstreams["web 127.0.0.1:1"]
	if u.Group != "web" || u.Address != "127.0.0.1:1" {
		t.Errorf("upstream key %+v", u)
	}
	near("upstream req/s", u.Requests, 1)
	near("upstream err/s", u.Errors, 0.5)
	near("cache hit ratio", p.Cache.HitRatio, 0.75)
	if p.Cache.Memory != 1<<20 {
		t.Errorf("cache memory %d", p.Cache.Memory)
	}

	// An idle interval has zero rates; the ring keeps the last 3 points.
	for i := 2; i <= 5; i++ {
		tl.Sample(t0.Add(time.Duration(2*i) * time.Second))
	}
	pts, seq = tl.Since(0)
	if len(pts) != 3 || seq != 5 || pts[0].Seq != 3 || pts[2].Seq != 5 {
		t.Fatalf("ring: %d points, seq %d, first %d", len(pts), seq, pts[0].Seq)
	}
	if pts[2].Total.Requests != 0 || pts[2].Total.P50 != 0 || pts[2].Cache.HitRatio != -1 {
		t.Errorf("idle point %+v", pts[2].Total)
	}
	if pts[2].Routes != nil || pts[2].Upstreams != nil || pts[2].Listeners != nil || pts[2].Protos != nil {
		t.Errorf("idle series kept in an idle point: %+v", pts[2])
	}
	if pts, _ := tl.Since(4); len(pts) != 1 || pts[0].Seq != 5 {
		t.Errorf("Since(4) = %v", pts)
	}
}

func TestTimelineCapsSeries(t *testing.T) {
	m := NewMetrics()
	tl := m.NewTimeline(time.Second, time.Minute)
	tl.Sample(time.Unix(0, 0))
	for i := range MaxTimelineSeries + 10 {
		m.ObserveRequest(fmt.Sprintf("r%d", i), "HTTP/1.1", 200, time.Millisecond)
	}
	tl.Sample(time.Unix(1, 0))
	pts, _ := tl.Since(0)
	if n := len(pts[0].Routes); n > MaxTimelineSeries+1 {
		t.Fatalf("%d route series, want at most %d", n, MaxTimelineSeries+1)
	}
	if pts[0].Total.Requests != MaxTimelineSeries+10 {
		t.Fatalf("total %v", pts[0].Total.Requests)
	}
}

// TestTimelineCapsSeriesStable checks that past MaxTimelineSeries the routes, listeners and
// backends kept apart stay the same from one sample to the next: the metrics are collected
// in a map's order, and a name moving in and out of OtherSeries showed its whole count as
// one second's rate.
func TestTimelineCapsSeriesStable(t *testing.T) {
	m := NewMetrics()
	tl := m.NewTimeline(time.Second, time.Minute)
	for i := range MaxTimelineSeries + 20 {
		for range 1000 {
			m.ObserveRequest(fmt.Sprintf("r%d", i), "HTTP/1.1", 200, time.Millisecond)
			m.ObserveTraffic(fmt.Sprintf("l%d", i), fmt.Sprintf("r%d", i), 200, 10, 10)
			m.ObserveUpstream("web", fmt.Sprintf("10.0.%d.1:80", i), time.Millisecond, false)
		}
	}
	for s := range 20 {
		tl.Sample(time.Unix(int64(s), 0))
	}
	m.ObserveRequest("r3", "HTTP/1.1", 200, time.Millisecond)
	tl.Sample(time.Unix(20, 0))
	pts, _ := tl.Since(0)
	for _, p := range pts[:len(pts)-1] {
		if p.Total.Requests != 0 || len(p.Routes) != 0 || len(p.Listeners) != 0 || len(p.Upstreams) != 0 {
			t.Fatalf("point %d without traffic: total %v req/s, routes %v, listeners %v, backends %v",
				p.Seq, p.Total.Requests, p.Routes, p.Listeners, p.Upstreams)
		}
	}
	if last := pts[len(pts)-1]; last.Total.Requests != 1 || len(last.Routes) != 1 {
		t.Fatalf("last point: total %v req/s, routes %v; want one request", last.Total.Requests, last.Routes)
	}
}

func BenchmarkObserveTraffic(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.ObserveTraffic("public", "api", 200, int64(i&1023), 4096)
	}
}

func BenchmarkTimelineSample(b *testing.B) {
	m := NewMetrics()
	for i := range 20 {
		m.ObserveRequest(fmt.Sprintf("r%d", i), "HTTP/1.1", 200, time.Millisecond)
		m.ObserveUpstream("web", fmt.Sprintf("10.0.0.%d:80", i), time.Millisecond, false)
	}
	tl := m.NewTimeline(time.Second, 15*time.Minute)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		tl.Sample(now)
	}
}
