package router

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/limits"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// RateLimits holds the state of the config's rate-limit rules across config generations: a
// rule whose settings a reload leaves unchanged keeps its counts. The zero value is not
// usable; NewRateLimits makes one. It is safe for concurrent use.
type RateLimits struct {
	mu    sync.Mutex
	rules map[string]*limitRule
	share *sharing // nil: counts stay on this node
	// gateways are the ai_gateway routes' states (cache, rate limits, budgets) by route
	// name (aigateway.go).
	gateways sync.Map
}

// NewRateLimits returns an empty store.
func NewRateLimits() *RateLimits { return &RateLimits{rules: map[string]*limitRule{}} }

// limitRule is one rule's limiter and counters.
type limitRule struct {
	name    string
	sig     string                 // the settings the limiter was built for
	mode    atomic.Pointer[string] // enforce or log (reloads change it; metrics read it)
	shared  atomic.Bool            // counts shared with the cluster (Share)
	window  *limits.SlidingWindow  // one of window and bucket
	bucket  *limits.TokenBucket
	limit   int64
	period  time.Duration
	logNext atomic.Int64 // log mode: the time (limits.Now) before which no line is logged

	mu      sync.Mutex
	limited map[string]*atomic.Uint64 // by route
}

// rule returns the state of c, new when its settings changed.
func (rl *RateLimits) rule(c *config.RateLimit) *limitRule {
	sig := fmt.Sprintf("%s|%d|%v|%d|%d|%s", c.Algorithm, c.Limit, c.Period.Std(), c.Burst, c.Keys, strings.Join(c.Key, ","))
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if r := rl.rules[c.Name]; r != nil && r.sig == sig {
		r.mode.Store(&c.Mode)
		r.shared.Store(c.Shared())
		if rl.share != nil && r.shared.Load() && r.window != nil {
			r.window.Track()
		}
		return r
	}
	r := &limitRule{name: c.Name, sig: sig, limit: c.Limit, period: c.Period.Std(), limited: map[string]*atomic.Uint64{}}
	r.mode.Store(&c.Mode)
	r.shared.Store(c.Shared())
	size := limits.Sizing{Keys: c.Keys}
	if c.Algorithm == "token_bucket" {
		r.bucket = limits.NewTokenBucket(c.Limit, c.Period.Std(), c.Burst, size)
	} else {
		r.window = limits.NewSlidingWindow(c.Limit, c.Period.Std(), size)
		if rl.share != nil && r.shared.Load() {
			r.window.Track()
		}
	}
	rl.rules[c.Name] = r
	return r
}

// forget drops the rules a config no longer has.
func (rl *RateLimits) forget(keep map[string]bool) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for n := range rl.rules {
		if !keep[n] {
			delete(rl.rules, n)
		}
	}
}

// counter is the rule's limited-requests counter for route.
func (r *limitRule) counter(route string) *atomic.Uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.limited[route]
	if c == nil {
		c = new(atomic.Uint64)
		r.limited[route] = c
	}
	return c
}

// RateLimitStat is one rule's numbers for metrics.
type RateLimitStat struct {
	Rule string
	Mode string // enforce or log
	// Limited counts the requests the rule refused (log mode: would have refused), by route.
	Limited map[string]uint64
	// Keys estimates the distinct keys counted in the current period.
	Keys int
}

// Stats returns every rule's numbers.
func (rl *RateLimits) Stats() []RateLimitStat {
	rl.mu.Lock()
	rules := make([]*limitRule, 0, len(rl.rules))
	for _, r := range rl.rules {
		rules = append(rules, r)
	}
	rl.mu.Unlock()
	out := make([]RateLimitStat, 0, len(rules))
	for _, r := range rules {
		s := RateLimitStat{Rule: r.name, Mode: *r.mode.Load(), Limited: map[string]uint64{}}
		if r.window != nil {
			s.Keys = r.window.Keys()
		} else {
			s.Keys = r.bucket.Keys()
		}
		r.mu.Lock()
		for route, c := range r.limited {
			s.Limited[route] = c.Load()
		}
		r.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// keyPart is one part of a rule's key.
type keyPart struct {
	kind string // client_ip, header, cookie, path, host, method, jwt_claim, route
	arg  string
}

// routeLimit is a rule as one route applies it.
type routeLimit struct {
	rule    *limitRule
	parts   []keyPart
	v4, v6  int
	enforce bool
	status  int
	tarpit  time.Duration
	headers bool
	policy  string // the RateLimit-Policy item: "name";q=limit;w=seconds
	limited *atomic.Uint64
	route   string
	log     *slog.Logger
}

func compileLimit(r *limitRule, c *config.RateLimit, route string, log *slog.Logger) *routeLimit {
	l := &routeLimit{
		rule: r, v4: c.IPv4Prefix, v6: c.IPv6Prefix, enforce: c.Mode == "enforce", status: c.Status, tarpit: c.Tarpit.Std(),
		headers: c.ResponseHeaders, limited: r.counter(route), route: route, log: log,
		policy: fmt.Sprintf("%q;q=%d;w=%d", c.Name, c.Limit, int64(c.Period.Std()/time.Second)),
	}
	for _, k := range c.Key {
		kind, arg, _ := strings.Cut(k, ":")
		l.parts = append(l.parts, keyPart{kind: kind, arg: arg})
	}
	return l
}

// key appends the request's key for the rule to b.
func (l *routeLimit) key(b []byte, s *proxy.Session) []byte {
	req := s.Req
	for _, p := range l.parts {
		switch p.kind {
		case "client_ip":
			b = appendPrefix(b, s.ClientAddr().Addr(), l.v4, l.v6)
		case "header":
			v, _ := req.Header.Lookup(p.arg)
			b = append(b, v...)
		case "cookie":
			b = appendCookie(b, &req.Header, p.arg)
		case "path":
			path, _, _ := strings.Cut(req.Target, "?")
			b = append(b, path...)
		case "host":
			host := req.Authority
			if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
				host = host[:i]
			}
			for i := 0; i < len(host); i++ {
				c := host[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				b = append(b, c)
			}
		case "method":
			b = append(b, req.Method...)
		case "route":
			b = append(b, l.route...)
		case "ja4":
			b = append(b, s.Conn().JA4...)
		case "jwt_claim":
			b = appendClaim(b, &req.Header, p.arg)
		}
		b = append(b, 0)
	}
	return b
}

// appendPrefix appends the first v4 (or v6) bits of a, the rest zeroed.
func appendPrefix(b []byte, a netip.Addr, v4, v6 int) []byte {
	a = a.Unmap()
	if a.Is4() {
		p, _ := a.Prefix(v4)
		x := p.Addr().As4()
		return append(b, x[:]...)
	}
	p, _ := a.Prefix(v6)
	x := p.Addr().As16()
	return append(b, x[:]...)
}

// appendCookie appends the value of the named cookie (the first one) from the Cookie fields.
func appendCookie(b []byte, h *message.Header, name string) []byte {
	h.Values("Cookie", func(v string) bool {
		for v != "" {
			var pair string
			pair, v, _ = strings.Cut(v, ";")
			k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if ok && k == name {
				b = append(b, strings.Trim(val, `"`)...)
				return false
			}
		}
		return true
	})
	return b
}

// appendClaim appends a claim of the bearer token in Authorization, read without checking its
// signature: a string as is, another JSON value as its JSON text.
func appendClaim(b []byte, h *message.Header, claim string) []byte {
	auth, _ := h.Lookup("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return b
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > 8192 {
		return b
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return b
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return b
	}
	raw, ok := claims[claim]
	if !ok {
		return b
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return append(b, s...)
	}
	return append(b, raw...)
}

// check applies the rule to the request; it reports whether the request was answered
// (refused).
func (l *routeLimit) check(s *proxy.Session, c *reqCtx) (bool, error) {
	var buf [128]byte
	key := l.key(buf[:0], s)
	now := limits.Now()
	var d limits.Decision
	if w := l.rule.window; w != nil {
		d = w.Allow(key, now)
	} else {
		d = l.rule.bucket.Allow(key, now)
	}
	if d.Allowed {
		if l.headers && c.limitHeader == nil {
			c.limitHeader, c.limitDecision = l, d
		}
		return false, nil
	}
	l.limited.Add(1)
	if !l.enforce {
		// Log mode: at most one line a second per rule.
		if next := l.rule.logNext.Load(); now >= next && l.rule.logNext.CompareAndSwap(next, now+int64(time.Second)) {
			l.log.Info("rate limit would refuse a request (mode log)", "rule", l.rule.name, "route", l.route, "client", s.ClientAddr().Addr().String())
		}
		return false, nil
	}
	if l.tarpit > 0 {
		t := time.NewTimer(l.tarpit)
		select {
		case <-t.C:
		case <-s.Context().Done():
			t.Stop()
		}
	}
	h := limitedPool.Get().(*message.Header)
	h.Reset()
	h.Add("Content-Type", "text/plain; charset=utf-8")
	h.Add("Cache-Control", "no-store")
	h.Add("Retry-After", strconv.FormatInt(ceilSeconds(d.RetryAfter), 10))
	l.addFields(h, d)
	if c.reqIDField != "" {
		h.Set(c.reqIDField, c.reqID) // request_id (access.go)
	}
	body := limitedBody429
	if l.status == 503 {
		body = limitedBody503
	}
	err := s.Respond(l.status, h, body)
	limitedPool.Put(h)
	return true, err
}

// addFields adds RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers).
func (l *routeLimit) addFields(h *message.Header, d limits.Decision) {
	h.Add("RateLimit-Policy", l.policy)
	h.Add("RateLimit", strconv.Quote(l.rule.name)+";r="+strconv.FormatInt(d.Remaining, 10)+";t="+strconv.FormatInt(ceilSeconds(d.Reset), 10))
}

var (
	limitedBody429 = []byte("429 Too Many Requests: rate limit exceeded\n")
	limitedBody503 = []byte("503 Service Unavailable: rate limit exceeded\n")
	limitedPool    = sync.Pool{New: func() any { return new(message.Header) }}
)

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// checkLimits applies the listener's rules, then the route's; the first refusal answers.
func (p *phases) checkLimits(s *proxy.Session, c *reqCtx) (bool, error) {
	for _, l := range p.limits[c.route.index] {
		if done, err := l.check(s, c); done || err != nil {
			return done, err
		}
	}
	return false, nil
}

// compileLimits returns the rate limits of each route on listener l (indexed like routes),
// or nil when none of them has any.
func compileLimits(cfg *config.Config, l *config.Listener, routes []*route, rules map[string]*config.RateLimit, store *RateLimits, log *slog.Logger) [][]*routeLimit {
	var out [][]*routeLimit
	for i, r := range routes {
		names := append(append([]string{}, l.RateLimits...), cfg.Routes[i].RateLimits...)
		if len(names) == 0 {
			continue
		}
		if out == nil {
			out = make([][]*routeLimit, len(routes))
		}
		for j, n := range names {
			if slices.Contains(names[:j], n) {
				continue // listed by both the listener and the route: counted once
			}
			c := rules[n]
			out[i] = append(out[i], compileLimit(store.rule(c), c, r.name, log))
		}
	}
	return out
}
