package router

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/lb"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// group is an upstream group of one config generation: its balancer and how requests are
// hashed onto it.
type group struct {
	name    string
	bal     *lb.Balancer
	hash    hashKind
	hashHdr string // header name for hashHeader
}

type hashKind uint8

const (
	hashNone hashKind = iota
	hashClientIP
	hashPath
	hashHeader
)

// hashKey returns the consistent-hash key of req, using buf for the client address (the
// resolved one: behind trusted proxies, the address they forwarded).
func (g *group) hashKey(buf []byte, req *message.Request, client netip.AddrPort) []byte {
	switch g.hash {
	case hashClientIP:
		return client.Addr().Unmap().AppendTo(buf[:0])
	case hashPath:
		return append(buf[:0], req.Path()...)
	case hashHeader:
		v, _ := req.Header.Lookup(g.hashHdr)
		return append(buf[:0], v...)
	}
	return nil
}

func selector(policy string) lb.Selector {
	switch policy {
	case "weighted":
		return &lb.WeightedRoundRobin{}
	case "random":
		return lb.Random{}
	case "p2c":
		return lb.PowerOfTwo{}
	case "least_conn":
		return &lb.LeastConn{}
	case "consistent_hash":
		return &lb.ConsistentHash{}
	}
	return &lb.RoundRobin{}
}

// peerTemplate builds how the group's servers are reached.
func peerTemplate(u *config.Upstream) (*upstream.Peer, error) {
	p := &upstream.Peer{
		Host:          u.Host,
		ProxyProtocol: config.ProxyProtocolVersion(u.SendProxyProtocol),
		Timeouts: upstream.Timeouts{
			Connect: u.Timeouts.Connect.Std(),
			Read:    u.Timeouts.Read.Std(),
			Write:   u.Timeouts.Write.Std(),
			Idle:    u.Pool.IdleTimeout.Std(),
			Total:   u.Timeouts.Total.Std(),
		},
	}
	switch u.Protocol {
	case "h2", "h2c":
		p.Protocol = upstream.HTTP2
	case "h3":
		p.Protocol = upstream.HTTP3
	}
	if t := u.TLS; t != nil {
		o := &upstream.TLSOptions{ServerName: t.ServerName, InsecureSkipVerify: !*t.Verify}
		if o.ServerName == "" && u.Host != "" {
			o.ServerName = message.StripPort(u.Host)
		}
		if t.CA != "" {
			pool, err := config.LoadCAPool(t.CA)
			if err != nil {
				return nil, err
			}
			o.RootCAs = pool
		}
		if t.ClientCert != "" {
			c, err := config.LoadCertificate(t.ClientCert, t.ClientKey)
			if err != nil {
				return nil, err
			}
			o.ClientCert = c
		}
		p.TLS = o
	}
	return p, nil
}

// newGroup builds the balancer of one upstream group, sharing state through store.
func newGroup(u *config.Upstream, store *lb.StateStore, m Metrics, log *slog.Logger) (*group, error) {
	g := &group{name: u.Name}
	switch {
	case u.HashKey == "client_ip":
		g.hash = hashClientIP
	case u.HashKey == "path":
		g.hash = hashPath
	case strings.HasPrefix(u.HashKey, "header:"):
		g.hash, g.hashHdr = hashHeader, strings.TrimPrefix(u.HashKey, "header:")
	}
	tmpl, err := peerTemplate(u)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	opts := lb.Options{
		Peer:     tmpl,
		Selector: selector(u.Policy),
		Passive: lb.PassiveHealth{
			MaxFails: u.Passive.MaxFails,
			Window:   u.Passive.FailTimeout.Std(),
			Cooldown: u.Passive.FailTimeout.Std(),
		},
		Store:    store,
		Observer: &groupObserver{group: u.Name, m: m, log: log},
		Logger:   log.With("upstream", u.Name),
	}
	for _, s := range u.Servers {
		opts.Backends = append(opts.Backends, lb.BackendConfig{Address: s.Address, Weight: s.Weight})
	}
	if h := u.HealthCheck; h != nil {
		hc := &lb.HealthCheck{
			Interval:     h.Interval.Std(),
			Timeout:      h.Timeout.Std(),
			Rise:         h.Rise,
			Fall:         h.Fall,
			Path:         h.Path,
			ExpectStatus: h.ExpectStatus,
		}
		switch h.Type {
		case "http":
			hc.Type = lb.CheckHTTP
		case "tls":
			hc.Type = lb.CheckTLS
		}
		opts.HealthCheck = hc
	}
	if d := u.DNS; d != nil {
		disc := &lb.DNS{Name: d.Name, Port: d.Port}
		switch d.Type {
		case "A":
			disc.Family = lb.IPv4Only
		case "AAAA":
			disc.Family = lb.IPv6Only
		case "SRV":
			disc.SRV = true
		}
		opts.Discovery = disc
		opts.DiscoveryInterval = d.Refresh.Std()
	}
	g.bal, err = lb.New(opts)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	return g, nil
}

// groupObserver turns balancer events into health metrics and log lines.
type groupObserver struct {
	group string
	m     Metrics
	log   *slog.Logger
}

func (o *groupObserver) Observe(e lb.Event) {
	switch e.Kind {
	case lb.BackendAdded:
		o.m.SetUpstreamHealth(o.group, e.Backend.Address, e.Backend.Healthy())
	case lb.BackendRemoved:
		o.m.ForgetUpstream(o.group, e.Backend.Address)
	case lb.BackendUp, lb.BackendRestored:
		o.m.SetUpstreamHealth(o.group, e.Backend.Address, true)
	case lb.BackendDown:
		o.m.SetUpstreamHealth(o.group, e.Backend.Address, false)
	case lb.BackendEjected:
		o.log.Warn("backend ejected after failures", "upstream", o.group, "backend", e.Backend.Address, "until", e.Until)
	case lb.DiscoveryFailed:
		o.log.Warn("dns discovery failed; keeping the last set", "upstream", o.group, "err", e.Err)
	}
}
