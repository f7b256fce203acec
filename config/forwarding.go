package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// privateRanges is what "private_ranges" in trusted_proxies stands for: loopback, RFC 1918,
// and IPv6 unique local and loopback addresses.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("::1/128"),
}

// ParseTrustedProxy reads one trusted_proxies entry: a CIDR ("10.0.0.0/8"), a single address
// ("192.0.2.1", "2001:db8::1") or "private_ranges".
func ParseTrustedProxy(s string) ([]netip.Prefix, error) {
	if s == "private_ranges" {
		return privateRanges, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("invalid trusted proxy %q: zones are not allowed", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return []netip.Prefix{p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return nil, fmt.Errorf("invalid trusted proxy %q: want a CIDR (10.0.0.0/8), an IP address or private_ranges", s)
	}
	a = a.Unmap()
	return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// TrustedProxiesFor returns the parsed trusted_proxies of listener l: its own, else the
// top-level list. The config must be valid.
func (c *Config) TrustedProxiesFor(l *Listener) []netip.Prefix {
	list := l.TrustedProxies
	if len(list) == 0 {
		list = c.TrustedProxies
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := ParseTrustedProxy(s)
		if err == nil {
			out = append(out, p...)
		}
	}
	return out
}

// validUpgrade checks one routes[].upgrades entry.
func validUpgrade(proto string) error {
	name, version, hasVersion := strings.Cut(proto, "/")
	switch strings.ToLower(name) {
	case "h2c", "h2", "http":
		return fmt.Errorf("upgrade %q is never forwarded: a switch to another HTTP version (h2c smuggling) would give the client a connection to the origin that bypasses routing and filtering", proto)
	}
	if !validToken(name) || hasVersion && !validToken(version) {
		return fmt.Errorf("invalid upgrade protocol %q (want a token such as websocket)", proto)
	}
	return nil
}

func (v *validator) trustedProxies(p string, list []string) {
	for i, s := range list {
		if _, err := ParseTrustedProxy(s); err != nil {
			v.errf(fmt.Sprintf("%s[%d]", p, i), "%v", err)
		}
	}
}
