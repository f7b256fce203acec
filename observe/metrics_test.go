package observe

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verge-edge/verge/upstream"
)

// scrape serves the metrics page and returns the value of every series, keyed by the series
// as written in the exposition ("name{label="v",...}").
func scrape(t *testing.T, m *Metrics) map[string]string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want the text exposition format", ct)
	}
	series := make(map[string]string)
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed exposition line %q", line)
		}
		series[line[:i]] = line[i+1:]
	}
	return series
}

func expectSeries(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok && v != "":
			t.Errorf("series %s missing, want %s", k, v)
		case ok && v == "":
			t.Errorf("series %s = %s, want it absent", k, g)
		case ok && g != v:
			t.Errorf("series %s = %s, want %s", k, g, v)
		}
	}
}

func TestObserveRequest(t *testing.T) {
	m := NewMetrics()
	m.ObserveRequest("api", "HTTP/1.1", 200, 3*time.Millisecond)
	m.ObserveRequest("api", "HTTP/1.1", 204, 20*time.Millisecond)
	m.ObserveRequest("api", "HTTP/1.1", 503, 2*time.Second)
	m.ObserveRequest("api", "HTTP/2.0", 404, time.Millisecond/2)
	m.ObserveRequest("", "HTTP/1.1", 0, 0)
	m.ObserveRequest("static", "HTTP/1.1", 101, 0)

	got := scrape(t, m)
	expectSeries(t, got, map[string]string{
		`verge_requests_total{code_class="2xx",proto="HTTP/1.1",route="api"}`:    "2",
		`verge_requests_total{code_class="5xx",proto="HTTP/1.1",route="api"}`:    "1",
		`verge_requests_total{code_class="4xx",proto="HTTP/2.0",route="api"}`:    "1",
		`verge_requests_total{code_class="other",proto="HTTP/1.1",route=""}`:     "1",
		`verge_requests_total{code_class="1xx",proto="HTTP/1.1",route="static"}`: "1",
		// Classes never seen have no series.
		`verge_requests_total{code_class="4xx",proto="HTTP/1.1",route="api"}`: "",

		`verge_request_duration_seconds_count{proto="HTTP/1.1",route="api"}`:             "3",
		`verge_request_duration_seconds_sum{proto="HTTP/1.1",route="api"}`:               "2.023",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="0.001"}`: "0",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="0.005"}`: "1",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="0.025"}`: "2",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="1"}`:     "2",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="2.5"}`:   "3",
		`verge_request_duration_seconds_bucket{proto="HTTP/1.1",route="api",le="+Inf"}`:  "3",
		`verge_request_duration_seconds_bucket{proto="HTTP/2.0",route="api",le="0.001"}`: "1",
		`verge_request_duration_seconds_count{proto="HTTP/2.0",route="api"}`:             "1",
	})
}

func TestStatusClass(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{{0, "other"}, {99, "other"}, {100, "1xx"}, {199, "1xx"}, {200, "2xx"}, {302, "3xx"},
		{499, "4xx"}, {500, "5xx"}, {599, "5xx"}, {600, "other"}, {-1, "other"}} {
		if got := classNames[statusClass(tc.status)]; got != tc.want {
			t.Errorf("statusClass(%d) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

func TestObserveUpstreamAndHealth(t *testing.T) {
	m := NewMetrics()
	m.ObserveUpstream("web", "10.0.0.1:80", 10*time.Millisecond, false)
	m.ObserveUpstream("web", "10.0.0.1:80", 30*time.Millisecond, false)
	m.ObserveUpstream("web", "10.0.0.1:80", 0, true) // connect refused: counted, no wait
	m.ObserveUpstream("web", "10.0.0.2:80", 6*time.Second, true)
	m.SetUpstreamHealth("web", "10.0.0.1:80", true)
	m.SetUpstreamHealth("web", "10.0.0.2:80", true)
	m.SetUpstreamHealth("web", "10.0.0.2:80", false)

	got := scrape(t, m)
	expectSeries(t, got, map[string]string{
		`verge_upstream_requests_total{addr="10.0.0.1:80",group="web",result="ok"}`:    "2",
		`verge_upstream_requests_total{addr="10.0.0.1:80",group="web",result="error"}`: "1",
		`verge_upstream_requests_total{addr="10.0.0.2:80",group="web",result="ok"}`:    "0",
		`verge_upstream_requests_total{addr="10.0.0.2:80",group="web",result="error"}`: "1",
		`verge_upstream_wait_seconds_count{addr="10.0.0.1:80",group="web"}`:            "2",
		`verge_upstream_wait_seconds_sum{addr="10.0.0.1:80",group="web"}`:              "0.04",
		`verge_upstream_wait_seconds_bucket{addr="10.0.0.1:80",group="web",le="0.01"}`: "1",
		`verge_upstream_wait_seconds_count{addr="10.0.0.2:80",group="web"}`:            "1",
		`verge_upstream_healthy{addr="10.0.0.1:80",group="web"}`:                       "1",
		`verge_upstream_healthy{addr="10.0.0.2:80",group="web"}`:                       "0",
	})

	m.ForgetUpstream("web", "10.0.0.2:80")
	got = scrape(t, m)
	expectSeries(t, got, map[string]string{
		`verge_upstream_healthy{addr="10.0.0.2:80",group="web"}`:                       "",
		`verge_upstream_requests_total{addr="10.0.0.2:80",group="web",result="error"}`: "",
		`verge_upstream_wait_seconds_count{addr="10.0.0.2:80",group="web"}`:            "",
		`verge_upstream_healthy{addr="10.0.0.1:80",group="web"}`:                       "1",
	})
	// A forgotten backend that comes back starts from zero.
	m.ObserveUpstream("web", "10.0.0.2:80", time.Millisecond, false)
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_upstream_requests_total{addr="10.0.0.2:80",group="web",result="ok"}`:    "1",
		`verge_upstream_requests_total{addr="10.0.0.2:80",group="web",result="error"}`: "0",
	})
}

func TestConnectionsAndReloads(t *testing.T) {
	m := NewMetrics()
	hook := m.ConnHook
	hook("HTTP/1.1", 1)
	hook("HTTP/1.1", 1)
	hook("HTTP/2.0", 1)
	hook("HTTP/1.1", -1)
	hook("HTTP/1.1", 0)

	before := float64(time.Now().Unix())
	m.Reloaded(true)
	m.Reloaded(false)
	got := scrape(t, m)
	expectSeries(t, got, map[string]string{
		`verge_active_connections{proto="HTTP/1.1"}`:   "1",
		`verge_active_connections{proto="HTTP/2.0"}`:   "1",
		`verge_connections_total{proto="HTTP/1.1"}`:    "2",
		`verge_connections_total{proto="HTTP/2.0"}`:    "1",
		`verge_config_reloads_total{result="success"}`: "1",
		`verge_config_reloads_total{result="failure"}`: "1",
		`verge_config_last_reload_successful`:          "0",
	})
	ts := got[`verge_config_last_reload_success_timestamp_seconds`]
	var v float64
	if _, err := fmt.Sscan(ts, &v); err != nil || v < before {
		t.Errorf("last reload timestamp = %q, want >= %v", ts, before)
	}
	m.Reloaded(true)
	expectSeries(t, scrape(t, m), map[string]string{`verge_config_last_reload_successful`: "1"})
	// The runtime and process collectors are on the same registry.
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("go_goroutines missing: Go collector not registered")
	}
}

func TestPoolStats(t *testing.T) {
	m := NewMetrics()
	if got := scrape(t, m); got[`verge_upstream_pool_reuse_ratio{addr="10.0.0.1:80"}`] != "" {
		t.Fatal("pool series present before SetPoolStats")
	}
	m.SetPoolStats(PoolStatsFunc(func(fn func(PoolSample)) {
		fn(PoolSample{Address: "10.0.0.1:80", Dialed: 3, DialErrors: 1, Requests: 10, Reused: 7, Idle: 2, Active: 1})
		fn(PoolSample{Address: "10.0.0.2:443", Dialed: 1, Requests: 5, Reused: 4, Idle: 0, Active: 1})
		// A second pool to the same address (another protocol) is summed.
		fn(PoolSample{Address: "10.0.0.2:443", Dialed: 1, Requests: 5, Reused: 4, Idle: 1, Active: 0})
		fn(PoolSample{Address: "10.0.0.3:80"})
	}))
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_upstream_pool_connections_dialed_total{addr="10.0.0.1:80"}`:  "3",
		`verge_upstream_pool_dial_errors_total{addr="10.0.0.1:80"}`:         "1",
		`verge_upstream_pool_requests_total{addr="10.0.0.1:80"}`:            "10",
		`verge_upstream_pool_reused_requests_total{addr="10.0.0.1:80"}`:     "7",
		`verge_upstream_pool_reuse_ratio{addr="10.0.0.1:80"}`:               "0.7",
		`verge_upstream_pool_idle_connections{addr="10.0.0.1:80"}`:          "2",
		`verge_upstream_pool_active_connections{addr="10.0.0.1:80"}`:        "1",
		`verge_upstream_pool_connections_dialed_total{addr="10.0.0.2:443"}`: "2",
		`verge_upstream_pool_reuse_ratio{addr="10.0.0.2:443"}`:              "0.8",
		`verge_upstream_pool_idle_connections{addr="10.0.0.2:443"}`:         "1",
		`verge_upstream_pool_active_connections{addr="10.0.0.2:443"}`:       "1",
		`verge_upstream_pool_reuse_ratio{addr="10.0.0.3:80"}`:               "0",
	})
	m.SetPoolStats(nil)
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_upstream_pool_reuse_ratio{addr="10.0.0.1:80"}`: "",
	})
}

func TestObserveRequestConcurrent(t *testing.T) {
	m := NewMetrics()
	const workers, each = 8, 500
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			routes := []string{"a", "b", "c"}
			for i := range each {
				m.ObserveRequest(routes[(i+w)%3], "HTTP/1.1", 200+100*(i%4), time.Millisecond)
			}
		}()
	}
	for range workers {
		<-done
	}
	got := scrape(t, m)
	total := 0
	for _, r := range []string{"a", "b", "c"} {
		for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
			var v int
			fmt.Sscan(got[`verge_requests_total{code_class="`+c+`",proto="HTTP/1.1",route="`+r+`"}`], &v)
			total += v
		}
	}
	if total != workers*each {
		t.Errorf("sum of verge_requests_total = %d, want %d", total, workers*each)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics()
	routes := []string{"api", "static", "login", "default"}
	m.ObserveRequest("api", "HTTP/1.1", 200, time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest(routes[i&3], "HTTP/1.1", 200, time.Duration(i)*time.Microsecond)
			i++
		}
	})
}

func BenchmarkObserveUpstream(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.ObserveUpstream("web", "10.0.0.1:80", time.Duration(i)*time.Microsecond, false)
	}
}

type fakePool map[upstream.PoolKey]upstream.Stats

func (f fakePool) KeyStats() map[upstream.PoolKey]upstream.Stats { return f }

func TestPoolStatsFrom(t *testing.T) {
	m := NewMetrics()
	m.SetPoolStats(PoolStatsFrom(fakePool{
		{Address: "10.0.0.1:80", Protocol: upstream.HTTP1}: {Dials: 2, DialErrors: 1, Requests: 8, ReusedRequests: 6,
			IdleConns: 1, ActiveConns: 1},
		{Address: "10.0.0.1:80", Protocol: upstream.HTTP2}: {Dials: 1, Requests: 2, ReusedRequests: 1, H2Conns: 1},
	}))
	expectSeries(t, scrape(t, m), map[string]string{
		`verge_upstream_pool_connections_dialed_total{addr="10.0.0.1:80"}`: "3",
		`verge_upstream_pool_dial_errors_total{addr="10.0.0.1:80"}`:        "1",
		`verge_upstream_pool_requests_total{addr="10.0.0.1:80"}`:           "10",
		`verge_upstream_pool_reused_requests_total{addr="10.0.0.1:80"}`:    "7",
		`verge_upstream_pool_reuse_ratio{addr="10.0.0.1:80"}`:              "0.7",
		`verge_upstream_pool_idle_connections{addr="10.0.0.1:80"}`:         "1",
		`verge_upstream_pool_active_connections{addr="10.0.0.1:80"}`:       "2",
	})
}
