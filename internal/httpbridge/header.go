// Package httpbridge converts between the net/http types that HTTP/2 and HTTP/3 libraries
// hand over (*http.Request, http.ResponseWriter, *http.Response, http.Header) and Verge's
// protocol-neutral message types. It holds what the h2 and h3 adapters share: header map
// conversion, the server-side exchange core and the client-side body and trailer plumbing.
// Protocol-specific behaviour (error classification, 0-RTT, frame filters) stays in the
// adapters and is passed in through Protocol.
package httpbridge

import (
	"net/http"
	"slices"
	"strings"
	"unsafe"

	"github.com/verge-edge/verge/message"
)

// commonNames are header names seen on most exchanges. Their lower-case and canonical forms are
// precomputed so converting between canonical map keys and the lower-case names used on the
// HTTP/2 and HTTP/3 wire does not allocate for them.
var commonNames = [...]string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
	"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
	"Access-Control-Allow-Methods", "Access-Control-Allow-Origin",
	"Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Request-Headers",
	"Access-Control-Request-Method", "Age", "Allow", "Alt-Svc", "Authorization",
	"Cache-Control", "Cdn-Loop", "Content-Disposition", "Content-Encoding", "Content-Language",
	"Content-Length", "Content-Location", "Content-Range", "Content-Security-Policy",
	"Content-Type", "Cookie", "Date", "Dnt", "Etag", "Expect", "Expires", "Forwarded", "From",
	"Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message", "Grpc-Status", "Grpc-Status-Details-Bin",
	"Grpc-Timeout", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
	"If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin",
	"Pragma", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer",
	"Referrer-Policy", "Retry-After", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
	"Sec-Fetch-User", "Server", "Server-Timing", "Set-Cookie", "Strict-Transport-Security",
	"Te", "Timing-Allow-Origin", "Trailer", "Upgrade-Insecure-Requests", "User-Agent", "Vary",
	"Via", "Www-Authenticate", "X-Content-Type-Options", "X-Forwarded-For",
	"X-Forwarded-Host", "X-Forwarded-Proto", "X-Frame-Options", "X-Real-Ip",
	"X-Request-Id", "X-Requested-With", "X-Xss-Protection",
}

var (
	canonToLower = make(map[string]string, len(commonNames))
	lowerToCanon = make(map[string]string, len(commonNames))
)

func init() {
	for _, n := range commonNames {
		l := strings.ToLower(n)
		canonToLower[n] = l
		lowerToCanon[l] = n
	}
}

// LowerName returns name in lower case, without allocating when it already is or when it is
// a common header name.
func LowerName(name string) string {
	if l, ok := canonToLower[name]; ok {
		return l
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// CanonicalName returns the http.Header map key for name (its canonical form, as
// http.CanonicalHeaderKey), without allocating when name already is canonical or is a common
// header name.
func CanonicalName(name string) string {
	if c, ok := lowerToCanon[name]; ok {
		return c
	}
	return http.CanonicalHeaderKey(name)
}

// SkipField reports whether the field f of header h must not travel on an HTTP/2 or HTTP/3
// stream: a connection-specific field, a field nominated by Connection (checked only when conn
// is true, meaning h has a Connection field), TE other than "trailers", or Host (which travels
// as :authority).
func SkipField(h *message.Header, f *message.Field, conn bool) bool {
	if message.ConnectionSpecific(f.Name) || message.EqualFold(f.Name, "host") {
		return true
	}
	if message.EqualFold(f.Name, "te") {
		return !message.EqualFold(message.TrimOWS(f.Value), "trailers")
	}
	return conn && h.HasToken("Connection", f.Name)
}

// FillFromMap appends the fields of m to dst with lower-case names. Names are visited in
// sorted order so the result is deterministic; values of one name keep their order. Names
// that start with ':' and Host are skipped. keys is scratch storage (nil is fine), returned
// for reuse.
func FillFromMap(dst *message.Header, m http.Header, keys []string) []string {
	keys = keys[:0]
	for k := range m {
		if len(k) == 0 || k[0] == ':' || k == "Host" {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := LowerName(k)
		for _, v := range m[k] {
			dst.Add(name, v)
		}
	}
	clear(keys)
	return keys[:0]
}

// AppendToMap adds the fields of h that may travel on HTTP/2 or HTTP/3 (see SkipField) to m,
// under canonical keys. skipMore, when non-nil, drops further fields by name.
//
// The strings are copied, into one allocation: the HTTP/2 and HTTP/3 libraries encode a head
// when the first body bytes go out or after the handler returns, and by then the strings of
// a proxied message, which point into the upstream connection's reused read buffer, may have
// changed.
func AppendToMap(m http.Header, h *message.Header, skipMore func(name string) bool) {
	conn := h.Has("Connection")
	fields := h.Fields()
	var a arena
	a.grow(fields)
	for i := range fields {
		f := &fields[i]
		if SkipField(h, f, conn) || skipMore != nil && skipMore(f.Name) {
			continue
		}
		k := CanonicalName(a.str(f.Name))
		m[k] = append(m[k], a.str(f.Value))
	}
}

// ForEachToken calls fn with each non-empty, OWS-trimmed element of a comma-separated list.
func ForEachToken(v string, fn func(string)) {
	for len(v) > 0 {
		var part string
		part, v = v, ""
		for i := 0; i < len(part); i++ {
			if part[i] == ',' {
				part, v = part[:i], part[i+1:]
				break
			}
		}
		if part = message.TrimOWS(part); part != "" {
			fn(part)
		}
	}
}

// arena copies strings into one buffer sized up front.
type arena struct{ buf []byte }

func (a *arena) grow(fields []message.Field) {
	n := 0
	for _, f := range fields {
		n += len(f.Name) + len(f.Value)
	}
	a.buf = make([]byte, 0, n)
}

// str returns a copy of s backed by the arena. The arena never reallocates (grow sized it),
// so earlier copies stay valid.
func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	start := len(a.buf)
	a.buf = append(a.buf, s...)
	return unsafe.String(&a.buf[start], len(s))
}
