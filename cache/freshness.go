package cache

import (
	"strings"
	"time"

	"github.com/verge-edge/verge/internal/httpdate"
	"github.com/verge-edge/verge/message"
)

// parseHTTPDate parses an HTTP-date in any of the three formats of RFC 9110 section 5.6.7.
func parseHTTPDate(s string) (time.Time, bool) { return httpdate.Parse(s) }

// freshnessLifetime computes how long a response stays fresh (RFC 9111 section 4.2.1): a
// shared cache uses s-maxage, then max-age, then Expires minus Date; without any of them the
// policy's TTL for the status, then heuristic freshness (section 4.2.2).
func freshnessLifetime(h *message.Header, cc *directives, status int, p *Policy, date time.Time) time.Duration {
	switch {
	case cc.sMaxAge >= 0:
		return time.Duration(cc.sMaxAge) * time.Second
	case cc.maxAge >= 0:
		return time.Duration(cc.maxAge) * time.Second
	}
	if v, ok := h.Lookup("Expires"); ok && !cc.targeted {
		exp, ok := parseHTTPDate(v)
		if !ok || h.Count("Expires") > 1 {
			return 0 // an invalid Expires means already expired
		}
		return max(0, exp.Sub(date))
	}
	if d, ok := p.defaultTTL(status); ok {
		return d
	}
	if lm, ok := h.Lookup("Last-Modified"); ok && (heuristicStatus(status) || cc.public) {
		if t, ok := parseHTTPDate(lm); ok && t.Before(date) {
			return min(date.Sub(t)/10, maxHeuristic)
		}
	}
	return 0
}

// explicitFreshness reports whether a response states its freshness or lets a shared cache
// store it otherwise (RFC 9111 section 3, the last condition).
func explicitFreshness(h *message.Header, cc *directives) bool {
	return cc.sMaxAge >= 0 || cc.maxAge >= 0 || cc.public || (h.Has("Expires") && !cc.targeted)
}

// storable decides whether a shared cache may store resp, the answer to req (RFC 9111
// section 3 and 3.5). It returns "" when it may, or the reason it may not.
func storable(req *message.Request, reqCC *directives, resp *message.Response, cc *directives, p *Policy) string {
	switch {
	case req.Method != "GET":
		return "method"
	case reqCC.noStore:
		return "request-no-store"
	case resp.Status < 200 || resp.Status == 304:
		return "status"
	case resp.Status == 206 && !partialStorable(resp):
		return "status"
	case cc.mustUnderstand && !understoodStatus(resp.Status):
		// RFC 9111 section 5.2.2.3: only a cache that understands the status may store it.
		return "must-understand"
	case !p.statusAllowed(resp.Status) && (resp.Status != 206 || !p.statusAllowed(200)):
		return "status"
	case cc.noStore && !cc.mustUnderstand:
		// With must-understand and a status Verge understands, no-store is ignored (it is
		// there for caches that do not implement must-understand).
		return "no-store"
	case cc.private:
		return "private"
	case (p.Authenticated || req.Header.Has("Authorization")) && !cc.public && !cc.mustRevalidate && cc.sMaxAge < 0:
		return "authorization"
	}
	if resp.Header.HasToken("Vary", "*") {
		return "vary-star"
	}
	if !explicitFreshness(&resp.Header, cc) {
		// RFC 9111 section 3: a status Verge does not know (299, 499, 599) is stored only
		// with explicit freshness; a known one also by heuristics or the route's TTLs.
		if !understoodStatus(resp.Status) {
			return "status"
		}
		if _, ok := p.defaultTTL(resp.Status); !ok && !heuristicStatus(resp.Status) {
			return "no-freshness"
		}
	}
	if resp.ContentLength > p.maxObjectSize() {
		return "too-large"
	}
	return ""
}

// buildMeta describes a response to be stored. hdr is the header to keep (already cloned).
func buildMeta(key []byte, url string, primary, hash uint64, resp *message.Response, hdr message.Header,
	cc *directives, p *Policy, reqTime, respTime time.Time, vary []string, varyKey []byte) *meta {
	m := &meta{
		Key:      string(key),
		URL:      url,
		Primary:  primary,
		Hash:     hash,
		Status:   resp.Status,
		ReqTime:  reqTime.UnixNano(),
		RespTime: respTime.UnixNano(),
		BodyLen:  resp.ContentLength,
		Vary:     vary,
		VaryKey:  string(varyKey),
	}
	if resp.Body == nil {
		m.BodyLen = 0
	}
	setHeaderFacts(m, &hdr, cc, p, respTime)
	return m
}

// setHeaderFacts derives the freshness facts of m from its header, stripping the fields the
// cache manages itself (Age, framing), and stores the header in m.
func setHeaderFacts(m *meta, hdr *message.Header, cc *directives, p *Policy, respTime time.Time) {
	date := respTime
	m.Date = respTime.Unix()
	if v, ok := hdr.Lookup("Date"); ok {
		if t, ok := parseHTTPDate(v); ok {
			date = t
			m.Date = t.Unix()
		}
	}
	m.AgeValue = 0
	if v, ok := hdr.Lookup("Age"); ok {
		// A list ("7200, 0", or several fields) counts by its first member (RFC 9111
		// section 5.1); an invalid value is ignored.
		first, _ := cutByte(v, ',')
		if n, ok := parseDelta(message.TrimOWS(first)); ok {
			m.AgeValue = n
		}
	}
	hdr.Del("Age")
	hdr.Del("Content-Length")
	hdr.Del("Transfer-Encoding")
	m.Lifetime = int64(freshnessLifetime(hdr, cc, m.Status, p, date))
	m.SWR, m.SIE = cc.staleWhileRevalidate, cc.staleIfError
	m.MustRevalidate = cc.mustRevalidate || cc.proxyRevalidate || cc.sMaxAge >= 0
	m.NoCache = cc.noCache
	m.ETag = hdr.Get("ETag")
	m.LastModified = hdr.Get("Last-Modified")
	m.Tags = tagsOf(hdr)
	m.Header = append(m.Header[:0], hdr.Fields()...)
}

// varyNames lists the field names of a response's Vary, lowercased.
func varyNames(h *message.Header) []string {
	var names []string
	h.Values("Vary", func(v string) bool {
		for v != "" {
			var n string
			n, v = cutByte(v, ',')
			if n = strings.ToLower(message.TrimOWS(n)); n != "" {
				names = append(names, n)
			}
		}
		return true
	})
	return names
}

// use is how a stored response may answer a request.
type use uint8

const (
	useFresh    use = iota // fresh: serve it
	useStale               // stale but the client accepts it (max-stale)
	useSWR                 // stale within stale-while-revalidate: serve it and refresh
	useValidate            // must be validated with the origin first
)

// evaluate decides how m may answer a request with directives rc at now (RFC 9111 section
// 4, 4.2.4 and 5.2.1; RFC 5861 section 3).
func evaluate(m *meta, rc *directives, now int64) (use, time.Duration) {
	age := m.age(now)
	lifetime := time.Duration(m.Lifetime)
	ttl := lifetime - age
	if rc.noCache || m.NoCache {
		return useValidate, ttl
	}
	if rc.maxAge >= 0 && age > time.Duration(rc.maxAge)*time.Second {
		return useValidate, ttl
	}
	if rc.minFresh >= 0 && ttl < time.Duration(rc.minFresh)*time.Second {
		return useValidate, ttl
	}
	if ttl > 0 {
		return useFresh, ttl
	}
	if m.MustRevalidate {
		return useValidate, ttl
	}
	staleness := -ttl
	if rc.maxStaleAny || (rc.maxStale >= 0 && staleness <= time.Duration(rc.maxStale)*time.Second) {
		return useStale, ttl
	}
	if m.SWR >= 0 && staleness <= time.Duration(m.SWR)*time.Second {
		return useSWR, ttl
	}
	return useValidate, ttl
}

// staleIfError reports whether m may answer a request that met an origin error (RFC 5861
// section 4): within the response's or the request's stale-if-error window and not
// forbidden by must-revalidate.
func staleIfError(m *meta, rc *directives, now int64) bool {
	if m.MustRevalidate {
		return false
	}
	staleness := m.age(now) - time.Duration(m.Lifetime)
	if staleness <= 0 {
		return true
	}
	window := max(m.SIE, rc.staleIfError)
	return window >= 0 && staleness <= time.Duration(window)*time.Second
}
