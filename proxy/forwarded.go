package proxy

import (
	"net/netip"
	"strings"

	"github.com/verge-edge/verge/message"
)

// trusts reports whether a is a trusted proxy whose forwarding fields are believed.
func (p *Proxy[C]) trusts(a netip.Addr) bool {
	if p.TrustForwarded {
		return true
	}
	for _, pre := range p.TrustedProxies {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

// resolveClient decides who the client is before the first phase runs. From an untrusted
// peer (the default) the client is the peer. From a trusted proxy, X-Forwarded-For is walked
// from its last element back, skipping trusted addresses: the first untrusted one is the
// client (all trusted: the first element). The walk stops at an element that is not an IP
// address, so the client is then the last address that could be read (NGINX's real_ip with
// real_ip_recursive, Caddy's trusted_proxies).
func (p *Proxy[C]) resolveClient(s *Session) {
	peer := s.ex.Conn().RemoteAddr
	s.client = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !p.TrustForwarded && len(p.TrustedProxies) == 0 || !s.client.IsValid() || !p.trusts(s.client.Addr()) {
		return // the client is the peer
	}
	s.trusted = true
	fields := s.Req.Header.Fields()
	for i := len(fields) - 1; i >= 0; i-- {
		if len(fields[i].Name) != len("X-Forwarded-For") || !message.EqualFold(fields[i].Name, "X-Forwarded-For") {
			continue
		}
		v := fields[i].Value
		for v != "" {
			el := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				el, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			el = message.TrimOWS(el)
			if el == "" {
				continue
			}
			a, ok := parseNodeAddr(el)
			if !ok {
				return
			}
			s.client = netip.AddrPortFrom(a, 0)
			if !p.trusts(a) {
				return
			}
		}
	}
}

// parseNodeAddr reads one X-Forwarded-For element: an IP address, optionally with a port
// ("192.0.2.1:4711", "[2001:db8::1]:4711") or in brackets. Zoned addresses are refused.
func parseNodeAddr(el string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(el)
	if err != nil {
		ap, perr := netip.ParseAddrPort(el)
		switch {
		case perr == nil:
			a = ap.Addr()
		case len(el) > 2 && el[0] == '[' && el[len(el)-1] == ']':
			if a, err = netip.ParseAddr(el[1 : len(el)-1]); err != nil {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// isForwardingField reports whether name is one of the fields that say who the client is and
// how it connected; an untrusted peer's are dropped. Besides the fields Verge sets, that is
// the other spellings origins read for the same facts: the scheme (X-Forwarded-Ssl: on and
// Front-End-Https: on mean https to Rack, Symfony and others, ahead of X-Forwarded-Proto;
// X-Forwarded-Scheme), the port and path prefix the client used (X-Forwarded-Port,
// X-Forwarded-Prefix) and the client address (Client-IP, X-Client-IP, True-Client-IP,
// X-Cluster-Client-IP). Spellings with "_" for "-" (X_Forwarded_For) count too: CGI-style
// origins (PHP, WSGI, Rack) read both as the same variable, HTTP_X_FORWARDED_FOR, so a forged
// underscore spelling would pass as the real one.
func isForwardingField(name string) bool {
	switch len(name) {
	case 9:
		return message.EqualFold(name, "Forwarded") || sameFieldName(name, "x-real-ip") ||
			sameFieldName(name, "client-ip")
	case 11:
		return sameFieldName(name, "x-client-ip")
	case 14:
		return sameFieldName(name, "true-client-ip")
	case 15:
		return sameFieldName(name, "x-forwarded-for") || sameFieldName(name, "x-forwarded-ssl") ||
			sameFieldName(name, "front-end-https")
	case 16:
		return sameFieldName(name, "x-forwarded-host") || sameFieldName(name, "x-forwarded-port")
	case 17:
		return sameFieldName(name, "x-forwarded-proto")
	case 18:
		return sameFieldName(name, "x-forwarded-scheme") || sameFieldName(name, "x-forwarded-prefix")
	case 19:
		return sameFieldName(name, "x-cluster-client-ip")
	}
	return false
}

// sameFieldName reports whether name equals lower (lower case, of the same length) ignoring
// ASCII case and taking "_" for "-".
func sameFieldName(name, lower string) bool {
	for i := 0; i < len(lower); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// addForwarded sets the fields that tell the origin about the client: X-Forwarded-For,
// X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and, with Proxy.Forwarded, Forwarded (RFC
// 7239). From an untrusted peer every such field it sent (Forwarded included) is dropped
// first, so a client cannot forge its address. From a trusted proxy X-Forwarded-For (and
// Forwarded with Proxy.Forwarded) are appended to, X-Forwarded-Proto and X-Forwarded-Host are
// kept when present, and X-Real-IP becomes the resolved client address.
func (p *Proxy[C]) addForwarded(s *Session, req *message.Request) {
	d := s.Req
	info := s.ex.Conn()
	proto := d.Scheme
	if proto == "" {
		proto = "http"
		if info.TLS != nil {
			proto = "https"
		}
	}
	h := &req.Header
	peerOK := info.RemoteAddr.IsValid()
	if !s.trusted {
		// buildUpstreamRequest already dropped the peer's forwarding fields.
		if peerOK {
			addr := s.appendAddr("", *info)
			h.Add("X-Forwarded-For", addr)
			h.Add("X-Real-IP", addr)
		}
		h.Add("X-Forwarded-Proto", proto)
		if d.Authority != "" {
			h.Add("X-Forwarded-Host", d.Authority)
		}
		if p.Forwarded {
			h.Add("Forwarded", s.forwardedElement("", info, d.Authority, proto))
		}
		return
	}
	// The peer is trusted, hence valid.
	addr := s.appendAddr("", *info)
	if prev := s.joinValues(h, "X-Forwarded-For"); prev != "" {
		h.Set("X-Forwarded-For", s.appendString(prev, ", ", addr))
	} else {
		h.Set("X-Forwarded-For", addr)
	}
	if !p.Forwarded {
		// The trusted proxy's Forwarded passes unchanged.
	} else if prev := s.joinValues(h, "Forwarded"); prev != "" {
		h.Set("Forwarded", s.forwardedElement(s.appendString(prev, ", "), info, d.Authority, proto))
	} else {
		h.Set("Forwarded", s.forwardedElement("", info, d.Authority, proto))
	}
	client := s.client.Addr()
	if client == info.RemoteAddr.Addr().Unmap() {
		h.Set("X-Real-IP", addr)
	} else {
		h.Set("X-Real-IP", s.appendIP("", client))
	}
	if !h.Has("X-Forwarded-Proto") {
		h.Add("X-Forwarded-Proto", proto)
	}
	if !h.Has("X-Forwarded-Host") && d.Authority != "" {
		h.Add("X-Forwarded-Host", d.Authority)
	}
}

// joinValues returns the values of every field named name joined by ", " (in the session's
// scratch space when there is more than one), "" when there is none.
func (s *Session) joinValues(h *message.Header, name string) string {
	joined := ""
	h.Values(name, func(v string) bool {
		if joined == "" {
			joined = v
		} else if v != "" {
			joined = s.appendString(joined, ", ", v)
		}
		return true
	})
	return joined
}

// forwardedElement appends this hop's Forwarded element (RFC 7239 section 4) to prefix:
// for= the peer (quoted and bracketed for IPv6, "unknown" when there is no IP), host= the
// authority the client asked for (quoted; left out when it holds characters a quoted string
// cannot), proto= the scheme.
func (s *Session) forwardedElement(prefix string, info *message.ConnInfo, authority, proto string) string {
	need := len(prefix) + len(authority) + len(proto) + 80
	if cap(s.scratch)-len(s.scratch) < need {
		s.scratch = make([]byte, 0, max(2*cap(s.scratch), need, 512))
	}
	start := len(s.scratch)
	b := append(s.scratch, prefix...)
	b = append(b, "for="...)
	switch a := info.RemoteAddr.Addr().Unmap(); {
	case !info.RemoteAddr.IsValid():
		b = append(b, "unknown"...)
	case a.Is6():
		b = append(b, `"[`...)
		b = a.AppendTo(b)
		b = append(b, `]"`...)
	default:
		b = a.AppendTo(b)
	}
	if authority != "" && quotable(authority) {
		b = append(b, `;host="`...)
		b = append(b, authority...)
		b = append(b, '"')
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	s.scratch = b
	out := b[start:]
	return unsafeString(out)
}

// quotable reports whether v can go in a quoted-string without escapes.
func quotable(v string) bool {
	for i := 0; i < len(v); i++ {
		if unquotable[v[i]] {
			return false
		}
	}
	return true
}

// unquotable marks the bytes a quoted-string cannot hold unescaped.
var unquotable = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t[0x7f], t['"'], t['\\'] = true, true, true
	return t
}()
