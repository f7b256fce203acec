package cache

import (
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
)

// Defaults of a Policy.
const (
	// DefaultMaxObjectSize bounds one stored response body when Policy.MaxObjectSize is zero.
	DefaultMaxObjectSize = 64 << 20
	// DefaultLockTimeout bounds how long a request waits for another request fetching the
	// same key when Policy.LockTimeout is zero.
	DefaultLockTimeout = 5 * time.Second
	// maxHeuristic caps heuristic freshness (10% of the time since Last-Modified).
	maxHeuristic = 24 * time.Hour
)

// Policy is how one class of requests (a route) is cached. The zero value caches what
// RFC 9111 allows with the default key (method, scheme, host, path and query), objects up to
// DefaultMaxObjectSize, and a DefaultLockTimeout cache lock. A Policy must not change once in
// use.
type Policy struct {
	// TTL gives the freshness lifetime, by status, of responses that state none (no
	// s-maxage, max-age or Expires), like NGINX's proxy_cache_valid. Key 0 applies to every
	// status without its own entry. Nil means heuristic freshness only (RFC 9111 section
	// 4.2.2: 10% of the time since Last-Modified, at most 24h, for statuses cacheable by
	// default).
	TTL map[int]time.Duration
	// Statuses restricts storing to these statuses. Empty means every status RFC 9111 allows.
	Statuses []int
	// MaxObjectSize bounds a stored body in bytes; larger responses are passed through
	// unstored. Zero means DefaultMaxObjectSize.
	MaxObjectSize int64
	// Authenticated marks every request as carrying credentials, as the route authenticates
	// them (by a cookie, another field or the client's address as much as by Authorization):
	// a response is then stored only when it allows a shared cache to serve it to others
	// (public, s-maxage or must-revalidate; RFC 9111 section 3.5).
	Authenticated bool
	// IgnoreQuery leaves the query out of the key.
	IgnoreQuery bool
	// IncludeQuery, when not empty, keeps only these query parameters in the key.
	IncludeQuery []string
	// ExcludeQuery drops these query parameters from the key (e.g. tracking parameters).
	ExcludeQuery []string
	// KeyHeaders adds the values of these request fields to the key, as if every response
	// varied on them.
	KeyHeaders []string
	// BypassCookies sends requests carrying any of these cookies straight to the origin,
	// neither served from nor stored in the cache.
	BypassCookies []string
	// BypassHeaders does the same for requests carrying any of these fields.
	BypassHeaders []string
	// LockTimeout bounds how long concurrent misses for a key wait for the one request that
	// fetches it; on timeout they go to the origin themselves. Zero means DefaultLockTimeout;
	// negative disables the lock.
	LockTimeout time.Duration
	// TargetedField names Verge's own targeted cache-control field (RFC 9213): when an origin
	// response carries it, its directives replace Cache-Control and Expires for this cache,
	// ahead of CDN-Cache-Control (which is honoured the same way and forwarded). The field is
	// removed from responses before they leave. Empty means DefaultTargetedField
	// ("Verge-CDN-Cache-Control").
	TargetedField string
	// UseStale lists the origin failures in which a stored response that has gone stale is
	// served instead of the failure, like NGINX's proxy_cache_use_stale: "error" (the
	// connection failed or closed early), "timeout", "invalid_header" (a malformed response)
	// and "http_500", "http_502", "http_503", "http_504", "http_403", "http_404",
	// "http_429" (the origin answered so). Responses marked must-revalidate, proxy-revalidate,
	// s-maxage or no-cache are never served stale. Empty means only what RFC 5861 allows:
	// within a stale-if-error window of the response or the request, for errors and 5xx.
	UseStale []string
}

// UseStaleConditions are the values Policy.UseStale accepts.
var UseStaleConditions = []string{"error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403", "http_404", "http_429"}

// useStale reports whether the policy serves stale responses on cond.
func (p *Policy) useStale(cond string) bool {
	for _, c := range p.UseStale {
		if c == cond {
			return true
		}
	}
	return false
}

// staleCondition names the UseStale condition of an origin failure: an error kind, or a
// status when kind is fault.Unknown and status is set. It returns "" for none.
func staleCondition(kind fault.Kind, status int) string {
	if status != 0 {
		switch status {
		case 500, 502, 503, 504, 403, 404, 429:
			return "http_" + itoa(status)
		}
		return ""
	}
	switch kind {
	case fault.Canceled, fault.InvalidRequest, fault.RequestTooLarge, fault.HeaderTooLarge, fault.URITooLong,
		fault.Forbidden, fault.MethodNotAllowed, fault.TooManyRequests:
		return ""
	case fault.ConnectTimeout, fault.ReadTimeout, fault.WriteTimeout, fault.IdleTimeout, fault.TotalTimeout:
		return "timeout"
	case fault.InvalidResponse:
		return "invalid_header"
	}
	return "error"
}

var defaultPolicy = &Policy{}

func (p *Policy) maxObjectSize() int64 {
	if p.MaxObjectSize > 0 {
		return p.MaxObjectSize
	}
	return DefaultMaxObjectSize
}

func (p *Policy) lockTimeout() time.Duration {
	if p.LockTimeout == 0 {
		return DefaultLockTimeout
	}
	return p.LockTimeout
}

// statusAllowed reports whether the policy lets status be stored.
func (p *Policy) statusAllowed(status int) bool {
	if len(p.Statuses) == 0 {
		return true
	}
	for _, s := range p.Statuses {
		if s == status {
			return true
		}
	}
	return false
}

// defaultTTL returns the configured lifetime for status, if any.
func (p *Policy) defaultTTL(status int) (time.Duration, bool) {
	if p.TTL == nil {
		return 0, false
	}
	if d, ok := p.TTL[status]; ok {
		return d, true
	}
	d, ok := p.TTL[0]
	return d, ok
}

// bypass reports whether req must skip the cache.
func (p *Policy) bypass(req *message.Request) bool {
	for _, h := range p.BypassHeaders {
		if req.Header.Has(h) {
			return true
		}
	}
	if len(p.BypassCookies) == 0 {
		return false
	}
	found := false
	req.Header.Values("Cookie", func(v string) bool {
		for v != "" {
			var pair string
			pair, v = cutByte(v, ';')
			name, _ := cutByte(message.TrimOWS(pair), '=')
			for _, c := range p.BypassCookies {
				if message.TrimOWS(name) == c {
					found = true
					return false
				}
			}
		}
		return true
	})
	return found
}

func cutByte(s string, c byte) (before, after string) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// heuristicStatus reports whether a status is cacheable by default (RFC 9110 section
// 15.1), which permits heuristic freshness.
func heuristicStatus(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus reports whether Verge understands a final status well enough to store it
// (RFC 9111 section 3: the cache must understand the status code).
func understoodStatus(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501, 400, 403, 500, 502, 503, 504:
		return true
	}
	return false
}
