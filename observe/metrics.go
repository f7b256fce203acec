package observe

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every Verge metric name.
const namespace = "verge"

// latencyBuckets are the histogram bounds, in seconds, for request and upstream latencies:
// from 1 ms (a cache or a loopback origin) to 60 s (the default upstream read timeout).
var latencyBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// Status classes, the code_class label of verge_requests_total.
const (
	classOther = iota // a status outside 100..599, including 0 (no response was sent)
	class1xx
	class2xx
	class3xx
	class4xx
	class5xx
	numClasses
)

var classNames = [numClasses]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass returns the class index of an HTTP status.
func statusClass(status int) int {
	if status < 100 || status > 599 {
		return classOther
	}
	return status / 100
}

// Metrics holds Verge's Prometheus metrics on a registry of its own, which also carries the Go
// runtime and process collectors. Create it with NewMetrics; one Metrics lives for the whole
// process and survives configuration reloads. All methods are safe for concurrent use, and
// the per-request ones (ObserveRequest, ObserveUpstream, ConnOpened, ConnClosed) do not
// allocate once a label combination has been seen.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	upstreamReqs    *prometheus.CounterVec
	upstreamWait    *prometheus.HistogramVec
	upstreamHealthy *prometheus.GaugeVec
	activeConns     *prometheus.GaugeVec
	connsTotal      *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	quicHandshakes  *prometheus.CounterVec
	shed            *prometheus.CounterVec
	quicResults     [3]prometheus.Counter // ok, failed, refused
	reloadOK        prometheus.Gauge
	reloadTime      prometheus.Gauge
	pools           *poolCollector
	workers         *workerCollector
	buckets         *bucketCollector
	queues          *queueCollector
	rateLimits      *rateLimitCollector
	overload        *overloadCollector
	cacheM          *cacheMetrics
	l4M             *l4Metrics
	aiM             *aiMetrics

	reqCache  cache[reqKey, reqEntry]
	upCache   cache[upKey, upEntry]
	connCache cache[string, connEntry]

	traffic *trafficMetrics
}

// NewMetrics returns a Metrics with every Verge metric registered.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Requests answered, by route, status class and downstream protocol.",
	}, []string{"route", "code_class", "proto"})
	m.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "Time from receiving a request head to finishing its response, by route and protocol.",
		Buckets: latencyBuckets,
	}, []string{"route", "proto"})
	m.upstreamReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_requests_total",
		Help: "Upstream attempts by group, backend address and result (ok or error).",
	}, []string{"group", "addr", "result"})
	m.upstreamWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "upstream_wait_seconds",
		Help:    "Time from starting an upstream attempt to its response head: connect (when a new connection is dialed), send and first byte.",
		Buckets: latencyBuckets,
	}, []string{"group", "addr"})
	m.upstreamHealthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "upstream_healthy",
		Help: "1 when the backend passes its health checks, 0 when it does not.",
	}, []string{"group", "addr"})
	m.activeConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "active_connections",
		Help: "Downstream connections currently open, by protocol.",
	}, []string{"proto"})
	m.connsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_total",
		Help: "Downstream connections accepted, by protocol.",
	}, []string{"proto"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads by result (success or failure).",
	}, []string{"result"})
	m.quicHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "quic_handshakes_total",
		Help: "QUIC handshakes of HTTP/3 listeners by result: ok, failed (timeout, TLS error, client gave up) or refused (over the cap of handshakes in flight).",
	}, []string{"result"})
	for i, r := range quicResultNames {
		m.quicResults[i] = m.quicHandshakes.WithLabelValues(r)
	}
	m.shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "shed_total",
		Help: "Connections and requests refused by a listener's client limits, by listener and reason (max_conns, conns_per_client, conn_rate_per_client, accept_rate, requests_per_client).",
	}, []string{"listener", "reason"})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_successful",
		Help: "1 when the last configuration reload succeeded (or none was tried), 0 when it failed.",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful configuration load.",
	})
	m.pools = &poolCollector{}
	m.workers = &workerCollector{}
	m.buckets = &bucketCollector{}
	m.queues = &queueCollector{}
	m.rateLimits = &rateLimitCollector{}
	m.overload = &overloadCollector{}
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
	// Failures are rare; pre-create both results so rate() works from the first scrape.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.requestDuration, m.upstreamReqs, m.upstreamWait, m.upstreamHealthy,
		m.activeConns, m.connsTotal, m.reloads, m.quicHandshakes, m.shed, m.reloadOK, m.reloadTime, m.pools,
		m.workers, m.buckets, m.queues, m.rateLimits, m.overload,
	)
	m.cacheM = newCacheMetrics(m.reg)
	m.l4M = newL4Metrics(m.reg)
	m.aiM = newAIMetrics(m.reg)
	m.traffic = newTrafficMetrics(m.reg)
	return m
}

// Handler returns the HTTP handler serving every metric in the Prometheus text exposition
// format (gzip-compressed when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// reqKey and reqEntry cache the children of the request metrics for one route and protocol.
type reqKey struct{ route, proto string }

type reqEntry struct {
	route, proto string
	duration     prometheus.Observer
	classes      [numClasses]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

// ObserveRequest counts one finished request in verge_requests_total{route,code_class,proto}
// and records dur in verge_request_duration_seconds{route,proto}. route is the name of the
// matched route ("" when none matched), proto the downstream protocol (message.HTTP11, ...),
// status the status sent downstream: 0 (nothing was sent) and values outside 100..599 count
// as code_class "other".
func (m *Metrics) ObserveRequest(route, proto string, status int, dur time.Duration) {
	e, ok := m.reqCache.lookup(reqKey{route, proto})
	if !ok {
		e = m.addRequestEntry(route, proto)
	}
	cls := statusClass(status)
	c := e.classes[cls].Load()
	if c == nil {
		c = &counterRef{m.requests.WithLabelValues(e.route, classNames[cls], e.proto)}
		e.classes[cls].Store(c)
	}
	c.c.Inc()
	e.duration.Observe(dur.Seconds())
}

func (m *Metrics) addRequestEntry(route, proto string) *reqEntry {
	route, proto = strings.Clone(route), strings.Clone(proto)
	return m.reqCache.add(reqKey{route, proto}, func() *reqEntry {
		return &reqEntry{route: route, proto: proto,
			duration: m.requestDuration.WithLabelValues(route, proto)}
	})
}

// upKey and upEntry cache the children of the upstream metrics for one backend of a group.
type upKey struct{ group, addr string }

type upEntry struct {
	ok, failed prometheus.Counter
	wait       prometheus.Observer
}

// ObserveUpstream counts one upstream attempt to backend addr of group in
// verge_upstream_requests_total{group,addr,result} (result "error" when err is true, "ok"
// otherwise) and records wait, the time to the response head, in
// verge_upstream_wait_seconds{group,addr}. A failed attempt with no wait to report passes
// wait 0 and is only counted.
func (m *Metrics) ObserveUpstream(group, addr string, wait time.Duration, err bool) {
	e, ok := m.upCache.lookup(upKey{group, addr})
	if !ok {
		e = m.addUpstreamEntry(group, addr)
	}
	if err {
		e.failed.Inc()
		if wait <= 0 {
			return
		}
	} else {
		e.ok.Inc()
	}
	e.wait.Observe(wait.Seconds())
}

func (m *Metrics) addUpstreamEntry(group, addr string) *upEntry {
	group, addr = strings.Clone(group), strings.Clone(addr)
	return m.upCache.add(upKey{group, addr}, func() *upEntry {
		return &upEntry{
			ok:     m.upstreamReqs.WithLabelValues(group, addr, "ok"),
			failed: m.upstreamReqs.WithLabelValues(group, addr, "error"),
			wait:   m.upstreamWait.WithLabelValues(group, addr),
		}
	})
}

// SetUpstreamHealth sets verge_upstream_healthy{group,addr} to 1 when healthy, 0 otherwise.
// Call it when a backend is configured and whenever its health changes.
func (m *Metrics) SetUpstreamHealth(group, addr string, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.upstreamHealthy.WithLabelValues(group, addr).Set(v)
}

// ForgetUpstream removes every per-backend series of addr in group (health, attempts, wait),
// for a backend that a reload removed.
func (m *Metrics) ForgetUpstream(group, addr string) {
	m.upstreamHealthy.DeleteLabelValues(group, addr)
	m.upstreamReqs.DeleteLabelValues(group, addr, "ok")
	m.upstreamReqs.DeleteLabelValues(group, addr, "error")
	m.upstreamWait.DeleteLabelValues(group, addr)
	m.upCache.remove(upKey{group, addr})
}

// connEntry caches the connection metrics of one protocol.
type connEntry struct {
	active prometheus.Gauge
	total  prometheus.Counter
}

func (m *Metrics) conn(proto string) *connEntry {
	if e, ok := m.connCache.lookup(proto); ok {
		return e
	}
	proto = strings.Clone(proto)
	return m.connCache.add(proto, func() *connEntry {
		return &connEntry{active: m.activeConns.WithLabelValues(proto), total: m.connsTotal.WithLabelValues(proto)}
	})
}

// ConnOpened counts a downstream connection speaking proto as open: it raises
// verge_active_connections{proto} and verge_connections_total{proto}.
func (m *Metrics) ConnOpened(proto string) {
	e := m.conn(proto)
	e.active.Inc()
	e.total.Inc()
}

// ConnClosed lowers verge_active_connections{proto}.
func (m *Metrics) ConnClosed(proto string) { m.conn(proto).active.Dec() }

// ConnHook has the signature of server.Server.ConnHook: delta > 0 calls ConnOpened, delta < 0
// ConnClosed. Assign the method value once: srv.ConnHook = metrics.ConnHook.
func (m *Metrics) ConnHook(proto string, delta int) {
	switch {
	case delta > 0:
		m.ConnOpened(proto)
	case delta < 0:
		m.ConnClosed(proto)
	}
}

var quicResultNames = [...]string{"ok", "failed", "refused"}

// QUICHandshake counts a QUIC handshake by result ("ok", "failed" or "refused") in
// verge_quic_handshakes_total. It has the signature of h3.Server.HandshakeHook. Active QUIC
// connections are verge_active_connections{proto="HTTP/3.0"}, fed by ConnHook.
func (m *Metrics) QUICHandshake(result string) {
	for i, r := range quicResultNames {
		if r == result {
			m.quicResults[i].Inc()
			return
		}
	}
}

// Shed counts a connection or request a listener's client limits refused, in
// verge_shed_total. It has the signature of router.Options.ShedHook.
func (m *Metrics) Shed(listener, reason string) { m.shed.WithLabelValues(listener, reason).Inc() }

// Reloaded records a configuration reload attempt: verge_config_reloads_total{result} goes up
// ("success" or "failure"), verge_config_last_reload_successful is set to 1 or 0, and on
// success verge_config_last_reload_success_timestamp_seconds is set to now.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.reloads.WithLabelValues("success").Inc()
		m.reloadOK.Set(1)
		m.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
		return
	}
	m.reloads.WithLabelValues("failure").Inc()
	m.reloadOK.Set(0)
}

// cache is a copy-on-write map for metric children: lookups are a lock-free map read with no
// allocation; an insert copies the map, which is fine for the few label combinations a
// configuration produces.
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]*V]
	mu sync.Mutex
}

func (c *cache[K, V]) lookup(k K) (*V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	return nil, false
}

// add returns the value for k, storing mk() when there is none yet.
func (c *cache[K, V]) add(k K, mk func() *V) *V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	n := make(map[K]*V, 1+lenOf(old))
	if old != nil {
		for k2, v2 := range *old {
			n[k2] = v2
		}
	}
	v := mk()
	n[k] = v
	c.m.Store(&n)
	return v
}

func (c *cache[K, V]) remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[k]; !ok {
		return
	}
	n := make(map[K]*V, len(*old))
	for k2, v2 := range *old {
		if k2 != k {
			n[k2] = v2
		}
	}
	c.m.Store(&n)
}

func lenOf[K comparable, V any](m *map[K]*V) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// Register adds a collector of another package (the cluster's, for one) to the metrics
// served by Handler.
func (m *Metrics) Register(c prometheus.Collector) error { return m.reg.Register(c) }
