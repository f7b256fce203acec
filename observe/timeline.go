package observe

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Timeline defaults and limits.
const (
	// DefaultTimelineInterval is the time between two samples.
	DefaultTimelineInterval = time.Second
	// DefaultTimelineWindow is how far back the samples go.
	DefaultTimelineWindow = 15 * time.Minute
	// MaxTimelineSeries caps the routes, backends and workers a point keeps apart: the
	// first seen of each kind, for the timeline's life (names a reload removed keep their
	// place). The rest are summed under OtherSeries, so a configuration with thousands of
	// routes does not make the ring grow without bound.
	MaxTimelineSeries = 64
	// OtherSeries names the sum of the series over MaxTimelineSeries.
	OtherSeries = "(other)"
)

// Rate is what happened in one sample interval, per second (latencies in milliseconds).
type Rate struct {
	// Requests is requests answered per second.
	Requests float64 `json:"req"`
	// Errors is 5xx answers (and requests that got no answer) per second.
	Errors float64 `json:"err"`
	// ClientErrors is 4xx answers per second.
	ClientErrors float64 `json:"4xx"`
	// P50 and P99 are the median and 99th percentile of the request (or upstream wait)
	// time in the interval, in milliseconds, interpolated within histogram buckets; 0
	// when no request finished.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	// BytesIn and BytesOut are request and response body bytes per second.
	BytesIn  float64 `json:"in"`
	BytesOut float64 `json:"out"`
}

// UpstreamRate is one backend's attempts in an interval.
type UpstreamRate struct {
	// Group and Address name the backend.
	Group   string `json:"group"`
	Address string `json:"address"`
	// Requests and Errors are attempts and failed attempts per second.
	Requests float64 `json:"req"`
	Errors   float64 `json:"err"`
	// P50 and P99 are the wait for the response head, in milliseconds.
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// CacheRate is the HTTP cache in an interval.
type CacheRate struct {
	// Results counts requests per second by result (hit, stale, collapsed, miss,
	// revalidated, bypass).
	Results map[string]float64 `json:"results"`
	// HitRatio is (hit+stale+collapsed+revalidated) / all but bypass, 0..1; -1 when there
	// were none.
	HitRatio float64 `json:"hit_ratio"`
	// Memory and Disk are the bytes held by each tier at the sample.
	Memory int64 `json:"memory"`
	Disk   int64 `json:"disk"`
	// Evictions is objects evicted per second.
	Evictions float64 `json:"evictions"`
}

// WorkerRate is one worker in an interval.
type WorkerRate struct {
	// Invocations and Errors are per second, CPU is guest CPU seconds per second.
	Invocations float64 `json:"inv"`
	Errors      float64 `json:"err"`
	CPU         float64 `json:"cpu"`
	// LiveObjects, Instances and Memory are the values at the sample.
	LiveObjects int   `json:"objects"`
	Instances   int   `json:"instances"`
	Memory      int64 `json:"memory"`
}

// Point is one sample of the timeline.
type Point struct {
	// Seq numbers points from 1, one more each sample.
	Seq uint64 `json:"seq"`
	// Time is when the sample was taken, in Unix milliseconds.
	Time int64 `json:"t"`
	// Total is every request; Routes splits it by route name ("none": no route matched),
	// Protos by downstream protocol, Listeners by listener name (without latencies; requests
	// the protocol layer refused before routing are not counted there).
	Total     Rate            `json:"total"`
	Routes    map[string]Rate `json:"routes,omitempty"`
	Protos    map[string]Rate `json:"protos,omitempty"`
	Listeners map[string]Rate `json:"listeners,omitempty"`
	// Upstreams are the backends' attempts, keyed "group address".
	Upstreams map[string]UpstreamRate `json:"upstreams,omitempty"`
	// Connections counts open downstream connections at the sample.
	Connections float64 `json:"conns"`
	// Cache is the HTTP cache's activity.
	Cache CacheRate `json:"cache"`
	// Workers are the workers' activity by name.
	Workers map[string]WorkerRate `json:"workers,omitempty"`
}

// Timeline keeps the last Window of samples of the request, upstream, cache and worker
// metrics in memory, one every Interval, for the admin dashboard's charts. It reads the
// counters and histograms Metrics already keeps, so it adds nothing to the request path;
// a sample costs one pass over the metric children, Interval apart.
type Timeline struct {
	m        *Metrics
	interval time.Duration

	mu     sync.Mutex
	ring   []Point // len == capacity once full; ring[next] is the oldest
	next   int
	full   bool
	seq    uint64
	prev   *cumulative
	prevAt time.Time
	notify chan struct{} // closed and replaced at each sample
	apart  apartNames
}

// NewTimeline returns a timeline of m's metrics. Zero interval or window mean the
// defaults; the window holds at most 86400 points.
func (m *Metrics) NewTimeline(interval, window time.Duration) *Timeline {
	if interval <= 0 {
		interval = DefaultTimelineInterval
	}
	if window <= 0 {
		window = DefaultTimelineWindow
	}
	n := int(window / interval)
	n = max(1, min(n, 86400))
	return &Timeline{m: m, interval: interval, ring: make([]Point, 0, n), notify: make(chan struct{})}
}

// Interval returns the time between samples.
func (t *Timeline) Interval() time.Duration { return t.interval }

// Run samples every Interval until ctx ends.
func (t *Timeline) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	t.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.Sample(now)
		}
	}
}

// Sample reads the metrics now and appends a point with the rates since the previous
// sample. The first call only records the counters' values and appends nothing.
func (t *Timeline) Sample(now time.Time) {
	cur := t.m.cumulative(&t.apart)
	t.mu.Lock()
	defer t.mu.Unlock()
	prev, prevAt := t.prev, t.prevAt
	t.prev, t.prevAt = cur, now
	if prev == nil {
		return
	}
	secs := now.Sub(prevAt).Seconds()
	if secs <= 0 {
		return
	}
	t.seq++
	p := cur.rates(prev, secs)
	p.Seq, p.Time = t.seq, now.UnixMilli()
	if len(t.ring) < cap(t.ring) {
		t.ring = append(t.ring, p)
	} else {
		t.ring[t.next] = p
		t.next = (t.next + 1) % len(t.ring)
		t.full = true
	}
	close(t.notify)
	t.notify = make(chan struct{})
}

// Since returns the kept points with a sequence number above after, oldest first, and the
// last sequence number. The points are shared: callers must not modify them.
func (t *Timeline) Since(after uint64) ([]Point, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Point, 0, min(len(t.ring), int(t.seq-min(after, t.seq))))
	for i := range len(t.ring) {
		p := t.ring[(t.next+i)%len(t.ring)]
		if p.Seq > after {
			out = append(out, p)
		}
	}
	return out, t.seq
}

// Changed returns a channel closed when the next point is added.
func (t *Timeline) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.notify
}

// histo is a histogram's cumulative bucket counts (the last one is +Inf: the count).
type histo struct {
	counts []uint64
}

func (h *histo) add(m *dto.Histogram) {
	b := m.GetBucket()
	if len(h.counts) == 0 {
		h.counts = make([]uint64, len(b)+1)
	}
	if len(h.counts) != len(b)+1 {
		return
	}
	for i, x := range b {
		h.counts[i] += x.GetCumulativeCount()
	}
	h.counts[len(b)] += m.GetSampleCount()
}

// quantiles returns q50 and q99 of the observations between prev and h, in milliseconds.
func (h *histo) quantiles(prev *histo) (float64, float64) {
	if len(h.counts) == 0 {
		return 0, 0
	}
	d := make([]float64, len(h.counts))
	for i, c := range h.counts {
		var p uint64
		if prev != nil && len(prev.counts) == len(h.counts) {
			p = prev.counts[i]
		}
		if c >= p {
			d[i] = float64(c - p)
		}
	}
	return quantile(d, 0.5) * 1000, quantile(d, 0.99) * 1000
}

// quantile interpolates q within the cumulative bucket deltas d (bounds latencyBuckets,
// then +Inf, reported as the last bound).
func quantile(d []float64, q float64) float64 {
	total := d[len(d)-1]
	if total <= 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, c := range d[:len(d)-1] {
		upper := latencyBuckets[i]
		if c >= rank {
			if c == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(c-below)
		}
		lower, below = upper, c
	}
	return latencyBuckets[len(latencyBuckets)-1]
}

type routeCum struct {
	req, err, c4, in, out float64
	dur                   histo
}

// count adds v requests answered with a status of class (a code_class label value).
func (r *routeCum) count(class string, v float64) {
	r.req += v
	switch class {
	case "5xx", "other":
		r.err += v
	case "4xx":
		r.c4 += v
	}
}

// add sums x into r.
func (r *routeCum) add(x *routeCum) {
	r.req += x.req
	r.err += x.err
	r.c4 += x.c4
	r.in += x.in
	r.out += x.out
	if len(x.dur.counts) == 0 {
		return
	}
	if len(r.dur.counts) == 0 {
		r.dur.counts = make([]uint64, len(x.dur.counts))
	}
	if len(r.dur.counts) == len(x.dur.counts) {
		for i, n := range x.dur.counts {
			r.dur.counts[i] += n
		}
	}
}

type upCum struct {
	group, addr string
	ok, err     float64
	wait        histo
}

type workerCum struct {
	inv, err, cpu float64
	objects, inst int
	memory        int64
}

// cumulative is the metrics' totals at one sample.
type cumulative struct {
	routes    map[string]*routeCum
	protos    map[string]*routeCum
	listeners map[string]*routeCum // no latency: requests, errors and bytes
	upstreams map[string]*upCum
	conns     float64
	cache     map[string]float64
	evictions float64
	memory    int64
	disk      int64
	workers   map[string]*workerCum
}

// collect calls fn with each metric c collects.
func collect(c prometheus.Collector, fn func(*dto.Metric)) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var d dto.Metric
	for m := range ch {
		d.Reset()
		if m.Write(&d) == nil {
			fn(&d)
		}
	}
}

func labels(d *dto.Metric) map[string]string {
	out := make(map[string]string, len(d.GetLabel()))
	for _, l := range d.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// apartNames remembers, for each kind of series (route, backend, ...), the names a point
// keeps apart: the first MaxTimelineSeries seen. The choice must not change from one sample
// to the next (the metrics are collected in a map's order), or a name moving between its
// own series and OtherSeries would show its whole count as one second's rate.
type apartNames struct {
	mu    sync.Mutex
	kinds map[string]map[string]struct{}
}

// name returns name if it is kept apart (or now becomes so, while fewer than
// MaxTimelineSeries are), else OtherSeries. The caller holds a.mu.
func (a *apartNames) name(kind, name string) string {
	if a.kinds == nil {
		a.kinds = make(map[string]map[string]struct{})
	}
	set := a.kinds[kind]
	if set == nil {
		set = make(map[string]struct{})
		a.kinds[kind] = set
	}
	if _, ok := set[name]; ok {
		return name
	}
	if len(set) >= MaxTimelineSeries {
		return OtherSeries
	}
	set[name] = struct{}{}
	return name
}

// series returns the entry of name in m, folding the names keep does not keep apart into
// OtherSeries.
func series[V any](m map[string]*V, keep *apartNames, kind, name string) *V {
	name = keep.name(kind, name)
	if v, ok := m[name]; ok {
		return v
	}
	v := new(V)
	m[name] = v
	return v
}

// cumulative reads the totals of the metrics the timeline charts.
func (m *Metrics) cumulative(keep *apartNames) *cumulative {
	keep.mu.Lock()
	defer keep.mu.Unlock()
	c := &cumulative{
		routes: map[string]*routeCum{}, protos: map[string]*routeCum{}, listeners: map[string]*routeCum{},
		upstreams: map[string]*upCum{},
		cache:     map[string]float64{}, workers: map[string]*workerCum{},
	}
	collect(m.requests, func(d *dto.Metric) {
		l := labels(d)
		v := d.GetCounter().GetValue()
		series(c.routes, keep, "route", l["route"]).count(l["code_class"], v)
		series(c.protos, keep, "proto", l["proto"]).count(l["code_class"], v)
	})
	collect(m.requestDuration, func(d *dto.Metric) {
		l := labels(d)
		series(c.routes, keep, "route", l["route"]).dur.add(d.GetHistogram())
		series(c.protos, keep, "proto", l["proto"]).dur.add(d.GetHistogram())
	})
	collect(m.traffic.bytes, func(d *dto.Metric) {
		l := labels(d)
		v := d.GetCounter().GetValue()
		for _, r := range []*routeCum{series(c.routes, keep, "route", l["route"]), series(c.listeners, keep, "listener", l["listener"])} {
			if l["direction"] == "in" {
				r.in += v
			} else {
				r.out += v
			}
		}
	})
	collect(m.traffic.requests, func(d *dto.Metric) {
		l := labels(d)
		series(c.listeners, keep, "listener", l["listener"]).count(l["code_class"], d.GetCounter().GetValue())
	})
	upstream := func(l map[string]string) *upCum {
		u := series(c.upstreams, keep, "upstream", l["group"]+" "+l["addr"])
		if u.group == "" && u.addr == "" {
			u.group, u.addr = l["group"], l["addr"]
		}
		return u
	}
	collect(m.upstreamReqs, func(d *dto.Metric) {
		l := labels(d)
		u := upstream(l)
		if l["result"] == "error" {
			u.err += d.GetCounter().GetValue()
		} else {
			u.ok += d.GetCounter().GetValue()
		}
	})
	collect(m.upstreamWait, func(d *dto.Metric) {
		upstream(labels(d)).wait.add(d.GetHistogram())
	})
	collect(m.activeConns, func(d *dto.Metric) { c.conns += d.GetGauge().GetValue() })
	var d dto.Metric
	for i, r := range cacheResults {
		d.Reset()
		if m.cacheM.results[i].Write(&d) == nil {
			c.cache[r] = d.GetCounter().GetValue()
		}
	}
	for _, e := range []prometheus.Counter{m.cacheM.evictMemory, m.cacheM.evictDisk} {
		d.Reset()
		if e.Write(&d) == nil {
			c.evictions += d.GetCounter().GetValue()
		}
	}
	if fn := m.cacheM.usage.Load(); fn != nil {
		c.memory, c.disk = (*fn)()
	}
	if p := m.workers.src.Load(); p != nil {
		(*p).EachWorker(func(s WorkerSample) {
			w := series(c.workers, keep, "worker", s.Worker)
			for _, n := range s.Invocations {
				w.inv += float64(n)
			}
			for _, n := range s.Errors {
				w.err += float64(n)
			}
			w.cpu += s.CPU.Seconds()
			w.objects += s.LiveObjects
			w.inst += s.IdleInstances + s.BusyInstances
			w.memory += s.Memory
		})
	}
	return c
}

// per returns the per-second rate of a counter that went from a to b; a counter that went
// down (a reset: a reload removed and re-added the series) counts from zero.
func per(b, a, secs float64) float64 {
	if b < a {
		a = 0
	}
	return (b - a) / secs
}

func (r *routeCum) rate(prev *routeCum, secs float64) Rate {
	if prev == nil {
		prev = &routeCum{}
	}
	out := Rate{
		Requests: per(r.req, prev.req, secs), Errors: per(r.err, prev.err, secs),
		ClientErrors: per(r.c4, prev.c4, secs),
		BytesIn:      per(r.in, prev.in, secs), BytesOut: per(r.out, prev.out, secs),
	}
	out.P50, out.P99 = r.dur.quantiles(&prev.dur)
	return out
}

// idle reports whether nothing happened in the interval.
func (r Rate) idle() bool {
	return r.Requests == 0 && r.Errors == 0 && r.ClientErrors == 0 && r.BytesIn == 0 && r.BytesOut == 0
}

// activeRates returns the rates of the series of cur that moved since prev; nil when none.
func activeRates(cur, prev map[string]*routeCum, secs float64) map[string]Rate {
	var out map[string]Rate
	for name, r := range cur {
		if rt := r.rate(prev[name], secs); !rt.idle() {
			if out == nil {
				out = make(map[string]Rate)
			}
			out[name] = rt
		}
	}
	return out
}

// rates returns the point between prev and c, secs apart.
func (c *cumulative) rates(prev *cumulative, secs float64) Point {
	p := Point{Connections: c.conns}
	var total, totalPrev routeCum
	for name, r := range c.routes {
		total.add(r)
		if pr := prev.routes[name]; pr != nil {
			totalPrev.add(pr)
		}
	}
	p.Total = total.rate(&totalPrev, secs)
	// Series idle in the interval are left out of the point: the ring then costs memory for
	// what moved, not for every configured route and backend.
	p.Routes = activeRates(c.routes, prev.routes, secs)
	p.Protos = activeRates(c.protos, prev.protos, secs)
	p.Listeners = activeRates(c.listeners, prev.listeners, secs)
	if len(c.upstreams) > 0 {
		for key, u := range c.upstreams {
			pu := prev.upstreams[key]
			if pu == nil {
				pu = &upCum{}
			}
			ur := UpstreamRate{Group: u.group, Address: u.addr,
				Requests: per(u.ok+u.err, pu.ok+pu.err, secs), Errors: per(u.err, pu.err, secs)}
			ur.P50, ur.P99 = u.wait.quantiles(&pu.wait)
			if ur.Requests == 0 && ur.Errors == 0 {
				continue
			}
			if p.Upstreams == nil {
				p.Upstreams = make(map[string]UpstreamRate)
			}
			p.Upstreams[key] = ur
		}
	}
	p.Cache = CacheRate{Results: make(map[string]float64, len(c.cache)), HitRatio: -1,
		Memory: c.memory, Disk: c.disk, Evictions: per(c.evictions, prev.evictions, secs)}
	var hits, all float64
	for _, r := range cacheResults {
		v := per(c.cache[r], prev.cache[r], secs)
		p.Cache.Results[r] = v
		switch r {
		case "bypass":
		case "miss":
			all += v
		default:
			hits += v
			all += v
		}
	}
	if all > 0 {
		p.Cache.HitRatio = hits / all
	}
	if len(c.workers) > 0 {
		p.Workers = make(map[string]WorkerRate, len(c.workers))
		for n, w := range c.workers {
			pw := prev.workers[n]
			if pw == nil {
				pw = &workerCum{}
			}
			p.Workers[n] = WorkerRate{
				Invocations: per(w.inv, pw.inv, secs), Errors: per(w.err, pw.err, secs),
				CPU: per(w.cpu, pw.cpu, secs), LiveObjects: w.objects, Instances: w.inst, Memory: w.memory,
			}
		}
	}
	for _, f := range []*float64{&p.Total.P50, &p.Total.P99} {
		if math.IsNaN(*f) {
			*f = 0
		}
	}
	return p
}
