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
func stripHopByHop(h *message.Header, upgrade bool) {
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
		return hopByHop(f.Name)
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
	stripHopByHop(&req.Header, isUpgrade(d))
	req.ContentLength = d.ContentLength
	if d.Body != nil {
		req.Body = &s.reqBody
	}
	p.addForwarded(s, req)
	if !p.NoVia {
		p.addVia(s, &req.Header, d.Proto)
	}
}

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
	if p.TrustForwarded && req.Header.Has("X-Forwarded-For") {
		prev := ""
		req.Header.Values("X-Forwarded-For", func(v string) bool {
			if prev == "" {
				prev = v
			} else {
				prev = s.appendString(prev, ", ", v)
			}
			return true
		})
		req.Header.Set("X-Forwarded-For", s.appendAddr(s.appendString(prev, ", "), *info))
	} else if info.RemoteAddr.IsValid() {
		req.Header.Set("X-Forwarded-For", s.appendAddr("", *info))
	} else {
		req.Header.Del("X-Forwarded-For")
	}
	if !p.TrustForwarded || !req.Header.Has("X-Forwarded-Proto") {
		req.Header.Set("X-Forwarded-Proto", proto)
	}
	if !p.TrustForwarded || !req.Header.Has("X-Forwarded-Host") {
		if d.Authority != "" {
			req.Header.Set("X-Forwarded-Host", d.Authority)
		} else {
			req.Header.Del("X-Forwarded-Host")
		}
	}
}
