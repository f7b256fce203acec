package h3

import (
	"net/http"
	"slices"
	"strings"

	"github.com/verge-edge/verge/message"
)

// lowerName returns name in lower case, without allocating when it already is.
func lowerName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// isConnectionSpecific reports whether name is a connection-specific field that HTTP/3
// forbids (RFC 9114 section 4.2).
func isConnectionSpecific(name string) bool {
	switch len(name) {
	case 7:
		return message.EqualFold(name, "upgrade")
	case 10:
		return message.EqualFold(name, "connection") || message.EqualFold(name, "keep-alive")
	case 16:
		return message.EqualFold(name, "proxy-connection")
	case 17:
		return message.EqualFold(name, "transfer-encoding")
	}
	return false
}

// skipField reports whether the field f of header h must not travel on an HTTP/3 stream: a
// connection-specific field, one nominated by Connection, TE other than "trailers", or Host
// (which travels as :authority).
func skipField(h *message.Header, f *message.Field, conn bool) bool {
	if isConnectionSpecific(f.Name) || message.EqualFold(f.Name, "host") {
		return true
	}
	if message.EqualFold(f.Name, "te") {
		return !message.EqualFold(message.TrimOWS(f.Value), "trailers")
	}
	return conn && h.HasToken("Connection", f.Name)
}

// fillFromMap appends the fields of m to dst with lower-case names, names sorted so the
// result is deterministic, values of one name in order. Pseudo-headers and Host are skipped.
// keys is scratch storage, returned for reuse.
func fillFromMap(dst *message.Header, m http.Header, keys []string) []string {
	keys = keys[:0]
	for k := range m {
		if len(k) == 0 || k[0] == ':' || k == "Host" {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := lowerName(k)
		for _, v := range m[k] {
			dst.Add(name, v)
		}
	}
	clear(keys)
	return keys[:0]
}

// appendToMap adds the fields of h that may travel on HTTP/3 to m under canonical keys.
// skipMore, when non-nil, drops further fields.
func appendToMap(m http.Header, h *message.Header, skipMore func(name string) bool) {
	conn := h.Has("Connection")
	fields := h.Fields()
	for i := range fields {
		f := &fields[i]
		if skipField(h, f, conn) || skipMore != nil && skipMore(f.Name) {
			continue
		}
		// Copies: quic-go encodes the head when the body starts or the handler returns, when a
		// proxied response's strings (aliasing the upstream's reused read buffer) may have
		// changed.
		k := http.CanonicalHeaderKey(strings.Clone(f.Name))
		m[k] = append(m[k], strings.Clone(f.Value))
	}
}

// forEachToken calls fn with each non-empty element of a comma-separated list.
func forEachToken(v string, fn func(string)) {
	for part := range strings.SplitSeq(v, ",") {
		if part = message.TrimOWS(part); part != "" {
			fn(part)
		}
	}
}

// idempotent reports whether method is idempotent (RFC 9110 section 9.2.2): a request with it
// may be replayed, so it is allowed in 0-RTT early data.
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
