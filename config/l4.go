package config

import (
	"fmt"
	"strings"
	"time"
)

// Defaults of layer 4 listeners.
const (
	// DefaultL4IdleTimeout closes a TCP connection with no bytes either way for this long.
	DefaultL4IdleTimeout = 10 * time.Minute
	// DefaultL4HandshakeTimeout bounds the TLS handshake, or the read of the ClientHello
	// for SNI routing.
	DefaultL4HandshakeTimeout = 10 * time.Second
	// DefaultL4MaxConns caps the concurrent connections of a TCP listener.
	DefaultL4MaxConns = 10000
	// DefaultUDPIdleTimeout ends a UDP flow with no datagram either way for this long.
	DefaultUDPIdleTimeout = time.Minute
	// DefaultUDPMaxFlows caps the flows (client addresses) of a UDP listener; each holds a
	// 64KiB receive buffer while it lives.
	DefaultUDPMaxFlows = 1000
)

// L4Listener proxies TCP connections or UDP datagrams to an upstream group, byte for byte
// (docs/l4.md): no HTTP is parsed. For TCP, with TLS it terminates TLS first; with SNI
// routes it picks the group by the server name the client asks for, read from its TLS
// ClientHello without terminating TLS (or after terminating it, with TLS). For UDP, each
// client address is a flow relayed to one server until it is idle.
type L4Listener struct {
	// Name identifies the listener in logs. Empty means the address.
	Name string `yaml:"name"`
	// Address is host:port to listen on. Required.
	Address string `yaml:"address"`
	// Protocol is "tcp" or "udp". Empty means "tcp".
	Protocol string `yaml:"protocol"`
	// Upstream names the group that gets the connections (the group's servers, policy,
	// health checks, passive ejection, connect timeout and send_proxy_protocol apply; its
	// tls and HTTP settings do not). Required unless SNIRoutes is set, where it is the
	// group of names no route lists; then empty refuses those connections.
	Upstream string `yaml:"upstream"`
	// TLS terminates TLS with these certificates (as on HTTP listeners). Nil passes the
	// bytes through.
	TLS *ListenerTLS `yaml:"tls"`
	// SNIRoutes picks the group by TLS server name. Empty means every connection goes to
	// Upstream.
	SNIRoutes []SNIRoute `yaml:"sni_routes"`
	// ProxyProtocol reads a PROXY protocol header from trusted peers, as on HTTP listeners.
	ProxyProtocol *ProxyProtocol `yaml:"proxy_protocol"`
	// IdleTimeout closes a connection (ends a UDP flow) with no bytes in either direction
	// for this long. Zero means 10m for tcp, 1m for udp.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// HandshakeTimeout bounds the TLS handshake or the ClientHello read. Zero means 10s.
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
	// MaxConns caps concurrent TCP connections (more wait in the accept queue), or UDP flows
	// (datagrams of further clients are dropped). Zero means 10000 for tcp, 1000 for udp.
	MaxConns int `yaml:"max_conns"`
}

// SNIRoute sends the connections asking for one of ServerNames to Upstream.
type SNIRoute struct {
	// ServerNames are exact names or "*.example.com" (one label). Required.
	ServerNames StringList `yaml:"server_names"`
	// Upstream is the group. Required.
	Upstream string `yaml:"upstream"`
}

func (l *L4Listener) setDefaults() {
	if l.Name == "" {
		l.Name = l.Address
	}
	if l.Protocol == "" {
		l.Protocol = "tcp"
	}
	if l.TLS != nil {
		l.TLS.setDefaults()
	}
	if l.ProxyProtocol != nil {
		l.ProxyProtocol.setDefaults()
	}
	l.HandshakeTimeout = orDuration(l.HandshakeTimeout, DefaultL4HandshakeTimeout)
	if l.Protocol == "udp" {
		l.IdleTimeout = orDuration(l.IdleTimeout, DefaultUDPIdleTimeout)
		if l.MaxConns == 0 {
			l.MaxConns = DefaultUDPMaxFlows
		}
		return
	}
	l.IdleTimeout = orDuration(l.IdleTimeout, DefaultL4IdleTimeout)
	if l.MaxConns == 0 {
		l.MaxConns = DefaultL4MaxConns
	}
}

// l4 validates the l4 listeners; groups are the upstream group names.
func (v *validator) l4(groups map[string]bool) {
	names := map[string]int{}
	for i := range v.c.Listeners {
		names[v.c.Listeners[i].Name] = -1
	}
	for i := range v.c.L4 {
		l := &v.c.L4[i]
		p := fmt.Sprintf("l4[%d]", i)
		if j, dup := names[l.Name]; dup {
			if j < 0 {
				v.errf(p+".name", "name %q is also an HTTP listener's", l.Name)
			} else {
				v.errf(p+".name", "duplicate l4 listener name %q (also l4[%d])", l.Name, j)
			}
		} else {
			names[l.Name] = i
		}
		if l.Address == "" {
			v.errf(p+".address", "address is required")
		} else if host, port, err := splitAddr(l.Address); err != nil {
			v.errf(p+".address", "%v", err)
		} else {
			for j := range v.c.Listeners {
				if l.Protocol == "udp" && !v.c.Listeners[j].HTTP3.Enabled {
					continue
				}
				if h2, p2, err := splitAddr(v.c.Listeners[j].Address); err == nil && p2 == port && (h2 == host || isWildcard(h2) || isWildcard(host)) {
					v.errf(p+".address", "address %s conflicts with listeners[%d]", l.Address, j)
				}
			}
			for j := range i {
				if v.c.L4[j].Protocol != l.Protocol {
					continue // tcp and udp ports are apart
				}
				if h2, p2, err := splitAddr(v.c.L4[j].Address); err == nil && p2 == port && (h2 == host || isWildcard(h2) || isWildcard(host)) {
					v.errf(p+".address", "address %s conflicts with l4[%d]", l.Address, j)
				}
			}
		}
		switch l.Protocol {
		case "tcp":
		case "udp":
			if l.TLS != nil {
				v.errf(p+".tls", "tls applies to tcp listeners (DTLS is not supported)")
			}
			if len(l.SNIRoutes) > 0 {
				v.errf(p+".sni_routes", "sni_routes apply to tcp listeners")
			}
			if l.ProxyProtocol != nil {
				v.errf(p+".proxy_protocol", "proxy_protocol applies to tcp listeners")
			}
			for j := range v.c.Upstreams {
				if u := &v.c.Upstreams[j]; u.Name == l.Upstream && u.SendProxyProtocol != "" {
					v.errf(p+".upstream", "group %q sets send_proxy_protocol, which udp listeners do not send", u.Name)
				}
			}
		default:
			v.errf(p+".protocol", "unknown protocol %q (want tcp or udp)", l.Protocol)
		}
		v.l4Group(p+".upstream", l.Upstream, groups, len(l.SNIRoutes) > 0)
		seen := map[string]bool{}
		for j, r := range l.SNIRoutes {
			rp := fmt.Sprintf("%s.sni_routes[%d]", p, j)
			if len(r.ServerNames) == 0 {
				v.errf(rp+".server_names", "at least one server name is required")
			}
			for k, n := range r.ServerNames {
				n = strings.ToLower(n)
				if err := checkHostPattern(n); err != nil || n == "" {
					v.errf(fmt.Sprintf("%s.server_names[%d]", rp, k), "invalid server name %q", n)
				} else if seen[n] {
					v.errf(fmt.Sprintf("%s.server_names[%d]", rp, k), "server name %q is listed twice", n)
				}
				seen[n] = true
			}
			v.l4Group(rp+".upstream", r.Upstream, groups, false)
		}
		if l.TLS != nil {
			if l.TLS.ACME != nil {
				v.errf(p+".tls.acme", "acme applies to HTTP listeners: an l4 listener takes certificates")
			} else {
				v.listenerTLS(p+".tls", l.TLS)
			}
		}
		if pp := l.ProxyProtocol; pp != nil {
			if len(pp.Trusted) == 0 {
				v.errf(p+".proxy_protocol.trusted", "at least one trusted peer (CIDR, address or private_ranges) is required: a header is taken only from them")
			}
			v.trustedProxies(p+".proxy_protocol.trusted", pp.Trusted)
		}
		if l.IdleTimeout < 0 || l.HandshakeTimeout < 0 {
			v.errf(p, "timeouts must not be negative")
		}
		if l.MaxConns < 0 {
			v.errf(p+".max_conns", "must not be negative")
		}
	}
}

// l4Group checks a group an l4 listener sends connections to.
func (v *validator) l4Group(p, name string, groups map[string]bool, optional bool) {
	if name == "" {
		if !optional {
			v.errf(p, "upstream is required")
		}
		return
	}
	if !groups[name] {
		v.errf(p, "unknown upstream group %q", name)
		return
	}
	for i := range v.c.Upstreams {
		if u := &v.c.Upstreams[i]; u.Name == name {
			if u.TLS != nil {
				v.errf(p, "group %q sets tls: an l4 listener passes bytes through and does not originate TLS", name)
			}
			if u.Protocol == "h3" {
				v.errf(p, "group %q uses h3 (QUIC): an l4 tcp listener needs TCP servers", name)
			}
		}
	}
}
