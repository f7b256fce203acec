package observe

import (
	"github.com/prometheus/client_golang/prometheus"
)

// l4Metrics are the metrics of the l4 listeners (router/l4.go).
type l4Metrics struct {
	conns   *prometheus.CounterVec
	bytes   *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

func newL4Metrics(reg *prometheus.Registry) *l4Metrics {
	l := &l4Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "l4_connections_total",
			Help: "Finished l4 TCP connections and UDP flows, by listener, protocol (tcp, udp) and result (ok, error).",
		}, []string{"listener", "proto", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "l4_bytes_total",
			Help: "Bytes relayed by l4 listeners, by listener and direction (in: client to server, out: server to client), counted when a connection or flow ends.",
		}, []string{"listener", "direction"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "l4_udp_dropped_total",
			Help: "Datagrams an l4 UDP listener dropped: of new clients without an available server or flow place, or server replies past the amplification bound.",
		}, []string{"listener"}),
	}
	reg.MustRegister(l.conns, l.bytes, l.dropped)
	return l
}

// ObserveL4 counts one finished l4 connection or flow (proto "tcp" or "udp") and its bytes.
func (m *Metrics) ObserveL4(listener, proto string, in, out int64, failed bool) {
	result := "ok"
	if failed {
		result = "error"
	}
	m.l4M.conns.WithLabelValues(listener, proto, result).Inc()
	m.l4M.bytes.WithLabelValues(listener, "in").Add(float64(in))
	m.l4M.bytes.WithLabelValues(listener, "out").Add(float64(out))
}

// L4Dropped counts a UDP datagram an l4 listener dropped.
func (m *Metrics) L4Dropped(listener string) {
	m.l4M.dropped.WithLabelValues(listener).Inc()
}
