package cache

import "github.com/verge-edge/verge/message"

// DefaultTargetedField is Verge's own targeted cache-control field (RFC 9213) when
// Policy.TargetedField is empty.
const DefaultTargetedField = "Verge-CDN-Cache-Control"

// cdnCacheControl is the targeted field every CDN honours (RFC 9213 section 3).
const cdnCacheControl = "CDN-Cache-Control"

func (p *Policy) targetedField() string {
	if p.TargetedField != "" {
		return p.TargetedField
	}
	return DefaultTargetedField
}

// responseDirectives parses the cache directives a response gives Verge (RFC 9213 section
// 2.1): those of the first targeted field that is present and valid, the route's own
// (Policy.TargetedField) before CDN-Cache-Control, and otherwise Cache-Control. When a
// targeted field is used, Cache-Control and Expires are not: d.targeted says so.
func responseDirectives(h *message.Header, d *directives, p *Policy) {
	if parseTargeted(h, p.targetedField(), d) || parseTargeted(h, cdnCacheControl, d) {
		return
	}
	parseDirectives(h, d)
}

// stripOwnTargeted removes the route's own targeted field from a response leaving Verge:
// it is addressed to Verge alone. CDN-Cache-Control is forwarded, for the CDNs downstream.
func stripOwnTargeted(h *message.Header, p *Policy) {
	if h.Has(p.targetedField()) {
		h.Del(p.targetedField())
	}
}

// parseTargeted parses the field name as a Structured Field Dictionary (RFC 8941 section
// 3.2) of cache directives into d. It reports false, leaving d unspecified, when the field is
// absent, empty or invalid: then the field is ignored. Keys are matched without regard to
// case. A known directive of the wrong type (max-age="10") makes the field invalid.
func parseTargeted(h *message.Header, name string, d *directives) bool {
	*d = directives{maxAge: -1, sMaxAge: -1, maxStale: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}
	ok, any := true, false
	h.Values(name, func(v string) bool {
		any = true
		if !parseSFDict(v, d) {
			ok = false
			return false
		}
		return true
	})
	if !ok || !any || !d.present {
		return false
	}
	d.targeted = true
	return true
}

// sfItem is the type of a parsed bare item.
type sfItem uint8

const (
	sfInvalid sfItem = iota
	sfBoolTrue
	sfBoolFalse
	sfInteger
	sfOther
)

// parseSFDict parses one field line of a dictionary, applying its members to d.
func parseSFDict(s string, d *directives) bool {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i == len(s) {
		return true // an empty line adds nothing
	}
	for {
		start := i
		if i = skipKey(s, i); i < 0 {
			return false
		}
		key := s[start:i]
		typ, intVal := sfBoolTrue, int64(0)
		if i < len(s) && s[i] == '=' {
			i++
			if i < len(s) && s[i] == '(' {
				if i = skipInnerList(s, i); i < 0 {
					return false
				}
				typ = sfOther
			} else {
				typ, intVal, i = parseBareItem(s, i)
				if typ == sfInvalid {
					return false
				}
			}
		}
		if i = skipParams(s, i); i < 0 {
			return false
		}
		if !applyTargeted(d, key, typ, intVal) {
			return false
		}
		d.present = true
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			return true
		}
		if s[i] != ',' {
			return false
		}
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) {
			return false // trailing comma
		}
	}
}

// applyTargeted applies one dictionary member; a known directive with a value of the wrong
// type is an error.
func applyTargeted(d *directives, key string, typ sfItem, n int64) bool {
	delta := func(dst *int64) bool {
		if typ != sfInteger || n < 0 {
			return false
		}
		if *dst < 0 {
			*dst = min(n, maxDelta)
		}
		return true
	}
	flag := func(dst *bool) bool {
		switch typ {
		case sfBoolTrue, sfOther: // no-cache="field" and the like still mean no-cache
			*dst = true
		case sfBoolFalse:
		default:
			return false
		}
		return true
	}
	switch {
	case message.EqualFold(key, "max-age"):
		return delta(&d.maxAge)
	case message.EqualFold(key, "s-maxage"):
		return delta(&d.sMaxAge)
	case message.EqualFold(key, "stale-while-revalidate"):
		return delta(&d.staleWhileRevalidate)
	case message.EqualFold(key, "stale-if-error"):
		return delta(&d.staleIfError)
	case message.EqualFold(key, "no-store"):
		return flag(&d.noStore)
	case message.EqualFold(key, "no-cache"):
		return flag(&d.noCache)
	case message.EqualFold(key, "private"):
		return flag(&d.private)
	case message.EqualFold(key, "public"):
		return flag(&d.public)
	case message.EqualFold(key, "must-revalidate"):
		return flag(&d.mustRevalidate)
	case message.EqualFold(key, "proxy-revalidate"):
		return flag(&d.proxyRevalidate)
	case message.EqualFold(key, "must-understand"):
		return flag(&d.mustUnderstand)
	}
	return true // unknown directives are ignored
}

// parseBareItem parses the bare item at s[i:]; for an integer it returns its value.
func parseBareItem(s string, i int) (sfItem, int64, int) {
	if i >= len(s) {
		return sfInvalid, 0, i
	}
	switch c := s[i]; {
	case c == '-' || isDigit(c):
		neg := c == '-'
		if neg {
			i++
		}
		start := i
		var n int64
		for i < len(s) && isDigit(s[i]) {
			if i-start < 15 {
				n = n*10 + int64(s[i]-'0')
			}
			i++
		}
		digits := i - start
		if digits == 0 || digits > 15 {
			return sfInvalid, 0, i
		}
		if i < len(s) && s[i] == '.' {
			if digits > 12 {
				return sfInvalid, 0, i
			}
			i++
			fs := i
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			if f := i - fs; f == 0 || f > 3 {
				return sfInvalid, 0, i
			}
			return sfOther, 0, i
		}
		if neg {
			n = -n
		}
		return sfInteger, n, i
	case c == '"':
		for i++; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\':
				if i+1 >= len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
					return sfInvalid, 0, i
				}
				i++
			case c == '"':
				return sfOther, 0, i + 1
			case c < 0x20 || c > 0x7e:
				return sfInvalid, 0, i
			}
		}
		return sfInvalid, 0, i
	case c == '*' || isAlpha(c):
		for i++; i < len(s) && (isTchar(s[i]) || s[i] == ':' || s[i] == '/'); i++ {
		}
		return sfOther, 0, i
	case c == ':':
		for i++; i < len(s); i++ {
			c := s[i]
			if c == ':' {
				return sfOther, 0, i + 1
			}
			if !(isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=') {
				return sfInvalid, 0, i
			}
		}
		return sfInvalid, 0, i
	case c == '?':
		if i+1 < len(s) && s[i+1] == '1' {
			return sfBoolTrue, 0, i + 2
		}
		if i+1 < len(s) && s[i+1] == '0' {
			return sfBoolFalse, 0, i + 2
		}
	}
	return sfInvalid, 0, i
}

// skipParams skips the parameters at s[i:] and returns the index after them, or -1.
func skipParams(s string, i int) int {
	for i < len(s) && s[i] == ';' {
		i++
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i = skipKey(s, i); i < 0 {
			return -1
		}
		if i < len(s) && s[i] == '=' {
			var typ sfItem
			if typ, _, i = parseBareItem(s, i+1); typ == sfInvalid {
				return -1
			}
		}
	}
	return i
}

// skipInnerList skips the inner list at s[i:] (s[i] is '(') and its parameters.
func skipInnerList(s string, i int) int {
	i++
	for {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) {
			return -1
		}
		if s[i] == ')' {
			return skipParams(s, i+1)
		}
		var typ sfItem
		if typ, _, i = parseBareItem(s, i); typ == sfInvalid {
			return -1
		}
		if i = skipParams(s, i); i < 0 {
			return -1
		}
		if i < len(s) && s[i] != ' ' && s[i] != ')' {
			return -1
		}
	}
}

// skipKey skips the dictionary or parameter key at s[i:] and returns the index after it, or
// -1. RFC 8941 keys are lower case; Verge accepts either case, as tolerant of a targeted
// field's directive names as of Cache-Control's.
func skipKey(s string, i int) int {
	if i >= len(s) || !(isAlpha(s[i]) || s[i] == '*') {
		return -1
	}
	for i < len(s) && isKeyChar(s[i]) {
		i++
	}
	return i
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isKeyChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

func isTchar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
