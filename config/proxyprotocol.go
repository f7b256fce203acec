package config

import (
	"fmt"
	"net/netip"
	"time"
)

// DefaultProxyProtocolTimeout bounds the read of an incoming PROXY protocol header.
const DefaultProxyProtocolTimeout = 5 * time.Second

// ProxyProtocol makes a listener read a PROXY protocol header (version 1 or 2, told apart by
// their signatures) at the start of every connection from a trusted peer, a load balancer
// such as HAProxy, AWS NLB or another Verge, and take the client address from it: access
// log, X-Forwarded-For, ip_rules, rate limits and the per-client limits all see the client
// instead of the balancer (docs/l4.md).
type ProxyProtocol struct {
	// Trusted lists the peers (CIDRs, addresses or "private_ranges") that send the header.
	// A connection from a trusted peer must start with a header and is closed otherwise. A
	// connection from any other peer is read as plain HTTP: a PROXY header it sends is not
	// taken (its request fails to parse and gets 400), so no client can spoof its address.
	// At least one entry.
	Trusted StringList `yaml:"trusted"`
	// Timeout bounds the read of the header. Zero means 5s.
	Timeout Duration `yaml:"timeout"`
}

// TrustedPrefixes returns Trusted parsed (validated already).
func (p *ProxyProtocol) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range p.Trusted {
		if ps, err := ParseTrustedProxy(s); err == nil {
			out = append(out, ps...)
		}
	}
	return out
}

func (p *ProxyProtocol) setDefaults() {
	p.Timeout = orDuration(p.Timeout, DefaultProxyProtocolTimeout)
}

// ProxyProtocolVersion returns the version number of a send_proxy_protocol value: 1, 2, or
// 0 for none.
func ProxyProtocolVersion(s string) uint8 {
	switch s {
	case "v1":
		return 1
	case "v2":
		return 2
	}
	return 0
}

// proxyProtocol validates the listeners' proxy_protocol and the upstream groups'
// send_proxy_protocol.
func (v *validator) proxyProtocol() {
	for i := range v.c.Listeners {
		pp := v.c.Listeners[i].ProxyProtocol
		if pp == nil {
			continue
		}
		p := fmt.Sprintf("listeners[%d].proxy_protocol", i)
		if len(pp.Trusted) == 0 {
			v.errf(p+".trusted", "at least one trusted peer (CIDR, address or private_ranges) is required: a header is taken only from them")
		}
		v.trustedProxies(p+".trusted", pp.Trusted)
		if pp.Timeout < 0 {
			v.errf(p+".timeout", "must not be negative")
		}
	}
	for i := range v.c.Upstreams {
		u := &v.c.Upstreams[i]
		p := fmt.Sprintf("upstreams[%d].send_proxy_protocol", i)
		switch u.SendProxyProtocol {
		case "", "v1", "v2":
		default:
			v.errf(p, "unknown PROXY protocol version %q (want v1 or v2)", u.SendProxyProtocol)
		}
		if u.SendProxyProtocol != "" && u.Protocol == "h3" {
			v.errf(p, "the PROXY protocol is sent on TCP connections; protocol h3 uses QUIC")
		}
	}
}
