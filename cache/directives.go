package cache

import (
	"github.com/verge-edge/verge/message"
)

// directives are the Cache-Control directives Verge acts on (RFC 9111 section 5.2), parsed
// from every Cache-Control field of a request or a response. Numeric values are -1 when the
// directive is absent.
type directives struct {
	noStore, noCache, private, public   bool
	mustRevalidate, proxyRevalidate     bool
	mustUnderstand                      bool
	onlyIfCached, maxStaleAny           bool
	maxAge, sMaxAge, maxStale, minFresh int64
	staleWhileRevalidate, staleIfError  int64
	present                             bool // a Cache-Control field was seen
	targeted                            bool // read from a targeted field (RFC 9213)
}

const maxDelta = 1 << 31 // RFC 9111 section 1.2.2: delta-seconds saturate at 2^31

func parseDirectives(h *message.Header, d *directives) {
	*d = directives{maxAge: -1, sMaxAge: -1, maxStale: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}
	h.Values("Cache-Control", func(v string) bool {
		d.present = true
		for v != "" {
			var part string
			part, v = splitDirective(v)
			name, val, hasVal := cutDirective(part)
			d.apply(name, val, hasVal)
		}
		return true
	})
}

func (d *directives) apply(name, val string, hasVal bool) {
	switch len(name) {
	case 6:
		if message.EqualFold(name, "public") {
			d.public = true
		}
	case 7:
		switch {
		case message.EqualFold(name, "max-age"):
			setDelta(&d.maxAge, val, hasVal)
		case message.EqualFold(name, "private"):
			d.private = true
		}
	case 8:
		switch {
		case message.EqualFold(name, "no-store"):
			d.noStore = true
		case message.EqualFold(name, "no-cache"):
			d.noCache = true
		case message.EqualFold(name, "s-maxage"):
			setDelta(&d.sMaxAge, val, hasVal)
		}
	case 9:
		switch {
		case message.EqualFold(name, "max-stale"):
			if !hasVal {
				d.maxStaleAny = true
			} else {
				setDelta(&d.maxStale, val, hasVal)
			}
		case message.EqualFold(name, "min-fresh"):
			setDelta(&d.minFresh, val, hasVal)
		}
	case 14:
		if message.EqualFold(name, "only-if-cached") {
			d.onlyIfCached = true
		} else if message.EqualFold(name, "stale-if-error") {
			setDelta(&d.staleIfError, val, hasVal)
		}
	case 15:
		if message.EqualFold(name, "must-revalidate") {
			d.mustRevalidate = true
		} else if message.EqualFold(name, "must-understand") {
			d.mustUnderstand = true
		}
	case 16:
		if message.EqualFold(name, "proxy-revalidate") {
			d.proxyRevalidate = true
		}
	case 22:
		if message.EqualFold(name, "stale-while-revalidate") {
			setDelta(&d.staleWhileRevalidate, val, hasVal)
		}
	}
}

// setDelta records the first occurrence of a delta-seconds directive. An invalid value counts
// as 0, which makes a response stale (RFC 9111 section 4.2.1 encourages that).
func setDelta(dst *int64, val string, hasVal bool) {
	if *dst >= 0 {
		return
	}
	if !hasVal {
		*dst = 0
		return
	}
	n, ok := parseDelta(val)
	if !ok {
		n = 0
	}
	*dst = n
}

// parseDelta parses delta-seconds, saturating at 2^31.
func parseDelta(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

// splitDirective cuts the first directive off a Cache-Control list, honouring quoted strings.
func splitDirective(v string) (part, rest string) {
	inQuote := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			inQuote = !inQuote
		case c == '\\' && inQuote:
			i++
		case c == ',' && !inQuote:
			return message.TrimOWS(v[:i]), v[i+1:]
		}
	}
	return message.TrimOWS(v), ""
}

// cutDirective splits "name=value" and unquotes the value.
func cutDirective(part string) (name, val string, hasVal bool) {
	for i := 0; i < len(part); i++ {
		if part[i] == '=' {
			name, val = message.TrimOWS(part[:i]), message.TrimOWS(part[i+1:])
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			return name, val, true
		}
	}
	return part, "", false
}
