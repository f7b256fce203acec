package observe

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// trafficKey and trafficEntry cache the per-listener children for one route of a listener.
type trafficKey struct{ listener, route string }

type trafficEntry struct {
	in, out prometheus.Counter
	classes *[numClasses]prometheus.Counter // the listener's, shared by its routes
}

// trafficMetrics are verge_body_bytes_total and verge_listener_requests_total.
type trafficMetrics struct {
	bytes     *prometheus.CounterVec
	requests  *prometheus.CounterVec
	cache     cache[trafficKey, trafficEntry]
	listeners cache[string, [numClasses]prometheus.Counter]
}

func newTrafficMetrics(reg *prometheus.Registry) *trafficMetrics {
	t := &trafficMetrics{}
	t.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "body_bytes_total",
		Help: "Request (direction in) and response (direction out) body bytes exchanged with clients, by listener and route.",
	}, []string{"listener", "route", "direction"})
	t.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "listener_requests_total",
		Help: "Requests answered, by listener and status class.",
	}, []string{"listener", "code_class"})
	reg.MustRegister(t.bytes, t.requests)
	return t
}

// ObserveTraffic counts one finished request of route on listener: in
// verge_listener_requests_total{listener,code_class} by its status (as ObserveRequest
// classes it), and its body bytes in verge_body_bytes_total{listener,route,direction}, in
// read from the client and out sent to it. It does not allocate once the pair has been seen.
func (m *Metrics) ObserveTraffic(listener, route string, status int, in, out int64) {
	t := m.traffic
	e, ok := t.cache.lookup(trafficKey{listener, route})
	if !ok {
		e = m.addTrafficEntry(listener, route)
	}
	e.classes[statusClass(status)].Inc()
	if in > 0 {
		e.in.Add(float64(in))
	}
	if out > 0 {
		e.out.Add(float64(out))
	}
}

func (m *Metrics) addTrafficEntry(listener, route string) *trafficEntry {
	t := m.traffic
	listener, route = strings.Clone(listener), strings.Clone(route)
	classes := t.listeners.add(listener, func() *[numClasses]prometheus.Counter {
		var cs [numClasses]prometheus.Counter
		for i, name := range classNames {
			cs[i] = t.requests.WithLabelValues(listener, name)
		}
		return &cs
	})
	return t.cache.add(trafficKey{listener, route}, func() *trafficEntry {
		return &trafficEntry{
			in:      t.bytes.WithLabelValues(listener, route, "in"),
			out:     t.bytes.WithLabelValues(listener, route, "out"),
			classes: classes,
		}
	})
}
