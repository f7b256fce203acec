package observe

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// bytesEntry caches the body-byte counters of one route.
type bytesEntry struct {
	in, out prometheus.Counter
}

func newBodyBytes(reg *prometheus.Registry) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "body_bytes_total",
		Help: "Request (direction in) and response (direction out) body bytes exchanged with clients, by route.",
	}, []string{"route", "direction"})
	reg.MustRegister(v)
	return v
}

// ObserveBytes counts the body bytes of one finished request of route in
// verge_body_bytes_total{route,direction}: in read from the client, out sent to it. It does
// not allocate once the route has been seen.
func (m *Metrics) ObserveBytes(route string, in, out int64) {
	e, ok := m.bytesCache.lookup(route)
	if !ok {
		route = strings.Clone(route)
		e = m.bytesCache.add(route, func() *bytesEntry {
			return &bytesEntry{in: m.bodyBytes.WithLabelValues(route, "in"), out: m.bodyBytes.WithLabelValues(route, "out")}
		})
	}
	if in > 0 {
		e.in.Add(float64(in))
	}
	if out > 0 {
		e.out.Add(float64(out))
	}
}
