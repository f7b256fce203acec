package cluster

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Status is what GET /cluster and `verge cluster status` show.
type Status struct {
	// Node is this node's name.
	Node string `json:"node"`
	// Mode is "embedded" (a NATS server in this process) or "external".
	Mode string `json:"mode"`
	// Connected reports the NATS connection; Server is the NATS server it is connected to.
	Connected bool   `json:"connected"`
	Server    string `json:"server,omitempty"`
	// Role is this node's role in the JetStream meta group: "leader", "follower",
	// "standalone" (an embedded server without routes) or "client" (external NATS).
	Role string `json:"role"`
	// MetaLeader is the JetStream meta group's leader; empty when unknown (external NATS
	// without access to the system account) or while there is none.
	MetaLeader string `json:"meta_leader"`
	// Peers are the JetStream servers of the meta group, as the embedded server sees them:
	// only the meta leader tracks whether the others are current, so on a follower Current
	// may be false for a healthy peer; Offline is meaningful on every node.
	Peers []Peer `json:"peers,omitempty"`
	// Replicas is the replica count of the buckets and streams Verge creates.
	Replicas int `json:"replicas"`
	// Members are the Verge nodes that answered a ping.
	Members []Member `json:"members"`
	// Streams are the JetStream streams of Verge's buckets (KV_*, OBJ_*) and streams.
	Streams []StreamStatus `json:"streams"`
	// Error says why parts are missing (JetStream unreachable).
	Error string `json:"error,omitempty"`
}

// Peer is one JetStream server of a group.
type Peer struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Lag counts the operations it is behind the leader.
	Lag uint64 `json:"lag"`
	// ActiveMillis is how long ago the leader heard from it.
	ActiveMillis float64 `json:"active_ms"`
}

// StreamStatus is the health of one stream.
type StreamStatus struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	Leader   string `json:"leader"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	// Followers are the replicas other than the leader.
	Followers []Peer `json:"followers,omitempty"`
	// Healthy is true when the stream has a leader and every follower is current.
	Healthy bool `json:"healthy"`
	// Lag is the largest follower lag, in operations.
	Lag uint64 `json:"lag"`
}

// ownStream reports whether a stream is one of Verge's: its buckets' streams are KV_verge*
// and OBJ_verge*, its own streams verge*.
func ownStream(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "KV_"), "OBJ_")
	return strings.HasPrefix(name, "verge")
}

// Status collects the cluster's state; it takes up to about wait for the members' answers.
func (n *Node) Status(ctx context.Context, wait time.Duration) Status {
	st := Status{Node: n.name, Mode: "external", Role: "client", Replicas: n.replicas,
		Connected: n.nc.IsConnected(), Server: n.nc.ConnectedServerName()}
	if n.embedded {
		st.Mode = "embedded"
		st.Role = "standalone"
	}
	if srv := n.Server(); srv != nil {
		if js, err := srv.Jsz(&server.JSzOptions{}); err == nil && js.Meta != nil {
			st.MetaLeader = js.Meta.Leader
			switch {
			case srv.JetStreamIsLeader():
				st.Role = "leader"
			default:
				st.Role = "follower"
			}
			selfListed := false
			for _, p := range js.Meta.Replicas {
				selfListed = selfListed || p.Name == srv.Name()
				st.Peers = append(st.Peers, Peer{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, ActiveMillis: ms(p.Active)})
			}
			if !selfListed {
				st.Peers = append(st.Peers, Peer{Name: srv.Name(), Current: true})
			}
			slices.SortFunc(st.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
		} else if srv.JetStreamIsClustered() {
			st.Role = "follower"
		}
	}
	members := make(chan []Member, 1)
	go func() { members <- n.Members(ctx, wait) }()
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	l := n.js.ListStreams(c)
	for si := range l.Info() {
		if !ownStream(si.Config.Name) {
			continue
		}
		s := StreamStatus{Name: si.Config.Name, Replicas: si.Config.Replicas, Messages: si.State.Msgs, Bytes: si.State.Bytes, Healthy: true}
		if ci := si.Cluster; ci != nil {
			s.Leader = ci.Leader
			for _, p := range ci.Replicas {
				s.Followers = append(s.Followers, Peer{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag, ActiveMillis: ms(p.Active)})
				s.Lag = max(s.Lag, p.Lag)
				if !p.Current || p.Offline {
					s.Healthy = false
				}
			}
		}
		if s.Leader == "" && si.Config.Replicas > 1 {
			s.Healthy = false
		}
		st.Streams = append(st.Streams, s)
	}
	if err := l.Err(); err != nil {
		st.Error = "listing streams: " + err.Error()
	}
	slices.SortFunc(st.Streams, func(a, b StreamStatus) int { return strings.Compare(a.Name, b.Name) })
	st.Members = <-members
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Collector returns a Prometheus collector of the cluster's state, computed on each scrape
// (with a short members wait).
func (n *Node) Collector() prometheus.Collector { return &collector{n: n} }

type collector struct{ n *Node }

var (
	descConnected  = prometheus.NewDesc("verge_cluster_connected", "1 when the node is connected to NATS.", nil, nil)
	descLeader     = prometheus.NewDesc("verge_cluster_meta_leader", "1 when this node's embedded server leads the JetStream meta group.", nil, nil)
	descMembers    = prometheus.NewDesc("verge_cluster_members", "Verge nodes answering a ping.", nil, nil)
	descPeers      = prometheus.NewDesc("verge_cluster_peer_current", "1 when a JetStream meta peer is current, per peer (embedded mode).", []string{"peer"}, nil)
	descHealthy    = prometheus.NewDesc("verge_cluster_stream_healthy", "1 when a Verge stream has a leader and current followers.", []string{"stream"}, nil)
	descStreamLag  = prometheus.NewDesc("verge_cluster_stream_lag", "Operations the slowest follower of a stream is behind its leader.", []string{"stream"}, nil)
	descStreamMsgs = prometheus.NewDesc("verge_cluster_stream_messages", "Messages held by a Verge stream.", []string{"stream"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descLeader, descMembers, descPeers, descHealthy, descStreamLag, descStreamMsgs} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st := c.n.Status(ctx, 250*time.Millisecond)
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, b2f(st.Connected))
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b2f(st.Role == "leader" || st.Role == "standalone"))
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(st.Members)))
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, b2f(p.Current && !p.Offline), p.Name)
	}
	for _, s := range st.Streams {
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, b2f(s.Healthy), s.Name)
		ch <- prometheus.MustNewConstMetric(descStreamLag, prometheus.GaugeValue, float64(s.Lag), s.Name)
		ch <- prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(s.Messages), s.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
