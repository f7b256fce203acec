package proxy

import (
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/upstream"
)

// hopByHop reports whether a field is connection-specific and never forwarded (RFC 9110
// section 7.6.1), apart from the fields the Connection header names.
func hopByHop(name string) bool {
	return message.ConnectionSpecific(name) || message.EqualFold(name, "TE") ||
		message.EqualFold(name, "Trailer") || message.EqualFold(name, "Proxy-Authorization")
}

// stripHopByHop removes hop-by-hop fields and those named by Connection. With upgrade set it
// keeps Upgrade (the HTTP/1.1 writers then send Connection: Upgrade). "TE: trailers" is kept:
// it is how gRPC clients say they accept trailers, and every hop must honour it.
func stripHopByHop(h *message.Header, upgrade bool) { stripFields(h, upgrade, false) }

// stripFields is stripHopByHop that, with forwarding set, also drops the forwarding fields
// (isForwardingField) in the same pass over the header.
func stripFields(h *message.Header, upgrade, forwarding bool) {
	// Fields named by Connection go first, from every Connection field line however many
	// there are. Deleting compacts the field list, so the k-th Connection field is looked up
	// again each round; Connection fields themselves stay until DeleteFunc below.
	for k := 0; ; k++ {
		v, ok := nthField(h, "Connection", k)
		if !ok {
			break
		}
		for v != "" {
			var tok string
			tok, v = nextToken(v)
			if tok != "" && !message.EqualFold(tok, "Connection") && !(upgrade && message.EqualFold(tok, "Upgrade")) {
				h.Del(tok)
			}
		}
	}
	h.DeleteFunc(func(f *message.Field) bool {
		switch {
		case upgrade && message.EqualFold(f.Name, "Upgrade"):
			return false
		case len(f.Name) == 2 && message.EqualFold(f.Name, "TE"):
			if message.ContainsToken(f.Value, "trailers") {
				f.Value = "trailers"
				return false
			}
			return true
		}
		return hopByHop(f.Name) || forwarding && isForwardingField(f.Name)
	})
}

// nthField returns the value of the k-th (from 0) field named name.
func nthField(h *message.Header, name string, k int) (string, bool) {
	for _, f := range h.Fields() {
		if message.EqualFold(f.Name, name) {
			if k == 0 {
				return f.Value, true
			}
			k--
		}
	}
	return "", false
}

// nextToken splits the first element off a comma-separated list.
func nextToken(v string) (tok, rest string) {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			return message.TrimOWS(v[:i]), v[i+1:]
		}
	}
	return message.TrimOWS(v), ""
}

// isUpgrade reports whether the request asks to switch protocols (RFC 9110 section 7.8).
func isUpgrade(r *message.Request) bool {
	return r.Proto == message.HTTP11 && r.Header.Has("Upgrade") && r.Header.HasToken("Connection", "upgrade")
}

func viaVersion(proto string) string {
	switch proto {
	case message.HTTP10:
		return "1.0 "
	case message.HTTP2:
		return "2 "
	case message.HTTP3:
		return "3 "
	}
	return "1.1 "
}

func (p *Proxy[C]) pseudonym() string {
	if p.Pseudonym != "" {
		return p.Pseudonym
	}
	return "verge"
}

// addVia appends this hop to Via (RFC 9110 section 7.6.3). proto is the protocol of the
// message as this proxy received it.
func (p *Proxy[C]) addVia(s *Session, h *message.Header, proto string) {
	if prev, ok := h.Lookup("Via"); ok {
		h.Set("Via", s.appendString(prev, ", ", viaVersion(proto), p.pseudonym()))
		return
	}
	h.Add("Via", s.appendString(viaVersion(proto), p.pseudonym()))
}

// buildUpstreamRequest derives the request sent to peer from the downstream request.
func (p *Proxy[C]) buildUpstreamRequest(s *Session, peer *upstream.Peer, req *message.Request) {
	d := s.Req
	req.Reset()
	req.Method = d.Method
	req.Target = d.Target
	req.Scheme = peer.Scheme()
	req.Authority = d.Authority
	if peer.Host != "" {
		req.Authority = peer.Host
	}
	req.Proto = message.HTTP11
	req.Header.CopyFrom(&d.Header)
	s.upgrade = isUpgrade(d) && p.upgradeAllowed(s, d)
	stripFields(&req.Header, s.upgrade, !s.trusted)
	req.ContentLength = d.ContentLength
	if d.Body != nil {
		req.Body = &s.reqBody
	}
	p.addForwarded(s, req)
	if !p.NoVia {
		p.addVia(s, &req.Header, d.Proto)
	}
}

// DefaultUpgrades are the protocols a request may switch to when Proxy.Upgrades is nil.
var DefaultUpgrades = []string{"websocket"}

// upgradeAllowed reports whether every protocol the request's Upgrade offers is allowed (by
// Session.AllowUpgrades, else Proxy.Upgrades, else DefaultUpgrades). A switch to h2c (or any
// other HTTP version) is never forwarded: it would hand the client an HTTP/2 connection to the
// origin on which Verge sees, routes and filters nothing more (h2c smuggling).
func (p *Proxy[C]) upgradeAllowed(s *Session, r *message.Request) bool {
	allowed := p.Upgrades
	if s.upgradesSet {
		allowed = s.upgrades
	} else if allowed == nil {
		allowed = DefaultUpgrades
	}
	ok := false
	r.Header.Values("Upgrade", func(v string) bool {
		for v != "" {
			var tok string
			tok, v = nextToken(v)
			if tok == "" {
				continue
			}
			if !upgradeListed(allowed, tok) {
				ok = false
				return false
			}
			ok = true
		}
		return true
	})
	return ok
}

// upgradeListed reports whether the Upgrade token proto ("name" or "name/version") is in list
// and is not an HTTP version.
func upgradeListed(list []string, proto string) bool {
	name := proto
	for i := 0; i < len(proto); i++ {
		if proto[i] == '/' {
			name = proto[:i]
			break
		}
	}
	if neverUpgrade(name) {
		return false
	}
	for _, a := range list {
		if message.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// neverUpgrade reports whether an Upgrade protocol name is one Verge never forwards, whatever
// the configuration: h2c, h2 and HTTP (a switch to another HTTP version). config.validUpgrade
// refuses the same names in routes[].upgrades.
func neverUpgrade(name string) bool {
	return message.EqualFold(name, "h2c") || message.EqualFold(name, "h2") || message.EqualFold(name, "HTTP")
}
