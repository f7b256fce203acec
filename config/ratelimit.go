package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/verge-edge/verge/acl"
)

// RateLimit is a named rate-limit rule (top-level rate_limits), applied by the routes and
// listeners that list its name in their rate_limits. A rule's counts are shared by every
// route and listener using it, and survive reloads while the rule's settings are unchanged.
type RateLimit struct {
	// Name identifies the rule in rate_limits lists, metrics, logs and the RateLimit-Policy
	// field. Required.
	Name string `yaml:"name"`
	// Key says what is counted: a list of parts joined into one key. Each part is one of
	// client_ip (the client address, cut to ipv4_prefix/ipv6_prefix bits), header:NAME,
	// cookie:NAME, path, host, method, jwt_claim:NAME (a claim of the bearer token in
	// Authorization, read without checking its signature), route or ja4 (the JA4
	// fingerprint of the client's TLS hello; empty on plain text). Empty means
	// [client_ip]. A request whose key part is absent (no such header) is counted under
	// the empty value of that part.
	Key StringList `yaml:"key"`
	// IPv4Prefix and IPv6Prefix are how many leading bits of the client address make the
	// client_ip part: 24 counts a /24 as one client. Zero means 32 and 64 (an IPv6 client
	// usually holds a whole /64).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Algorithm is sliding_window (at most limit requests in any period; the default) or
	// token_bucket (bursts of up to burst requests, refilled at limit per period).
	Algorithm string `yaml:"algorithm"`
	// Limit is the number of requests allowed per period. Required, at least 1.
	Limit int64 `yaml:"limit"`
	// Period is the window: from 1s to 24h. Zero means 1s.
	Period Duration `yaml:"period"`
	// Burst is the token bucket's size. Zero means limit. Only for token_bucket.
	Burst int64 `yaml:"burst"`
	// Mode is enforce (answer 429) or log (count and log what would be limited, let the
	// request through). Empty means enforce.
	Mode string `yaml:"mode"`
	// Keys is how many distinct keys the rule is sized to tell apart within a period; its
	// memory is 64·keys bytes for token_bucket and 128·keys for sliding_window (rounded up
	// to a power of two), whatever the number of keys seen. Beyond it, light keys share
	// counters with others and may be limited early (never late). Zero means 16384 (1 MiB
	// and 2 MiB). At most 1048576 (64 MiB and 128 MiB).
	Keys int `yaml:"keys"`
	// ResponseHeaders adds RateLimit-Policy and RateLimit to every response of the rule's
	// requests, not only to 429s.
	ResponseHeaders bool `yaml:"response_headers"`
	// Status is the status of limited requests: 429 or 503. Zero means 429.
	Status int `yaml:"status"`
	// Tarpit delays the answer to a refused request (enforce mode): a flooding client's
	// keep-alive connection then gets one answer per tarpit instead of as many as it can
	// send, which costs Verge no CPU while it waits (memory only, which
	// max_conns_per_client bounds). Zero means answer at once; at most 10s.
	Tarpit Duration `yaml:"tarpit"`
	// Share, with cluster: configured, counts a sliding_window rule's keys across the
	// nodes (each node publishes its counts every 100ms over the cluster and adds the
	// others'). Nil means true; token_bucket rules are never shared.
	Share *bool `yaml:"share"`
}

// Shared reports whether the rule's counts are shared across a cluster.
func (r *RateLimit) Shared() bool {
	return r.Algorithm == "sliding_window" && (r.Share == nil || *r.Share)
}

// RateLimitKeyParts are the key parts without an argument.
var RateLimitKeyParts = []string{"client_ip", "path", "host", "method", "route", "ja4"}

func (r *RateLimit) setDefaults() {
	if len(r.Key) == 0 {
		r.Key = StringList{"client_ip"}
	}
	if r.IPv4Prefix == 0 {
		r.IPv4Prefix = 32
	}
	if r.IPv6Prefix == 0 {
		r.IPv6Prefix = 64
	}
	if r.Algorithm == "" {
		r.Algorithm = "sliding_window"
	}
	if r.Period == 0 {
		r.Period = Duration(time.Second)
	}
	if r.Burst == 0 {
		r.Burst = r.Limit
	}
	if r.Mode == "" {
		r.Mode = "enforce"
	}
	if r.Keys == 0 {
		r.Keys = 16384
	}
	if r.Status == 0 {
		r.Status = 429
	}
}

// rateLimits checks the top-level rules and returns their names.
func (v *validator) rateLimits() map[string]bool {
	names := map[string]bool{}
	for i := range v.c.RateLimits {
		r := &v.c.RateLimits[i]
		p := fmt.Sprintf("rate_limits[%d]", i)
		switch {
		case r.Name == "":
			v.errf(p+".name", "name is required")
		case names[r.Name]:
			v.errf(p+".name", "duplicate rate limit name %q", r.Name)
		case !validToken(r.Name) || strings.ContainsAny(r.Name, `"\`):
			v.errf(p+".name", "name %q: use letters, digits and -._~ only", r.Name)
		}
		names[r.Name] = true
		for j, k := range r.Key {
			if err := checkKeyPart(k); err != nil {
				v.errf(fmt.Sprintf("%s.key[%d]", p, j), "%v", err)
			}
		}
		if r.IPv4Prefix < 1 || r.IPv4Prefix > 32 {
			v.errf(p+".ipv4_prefix", "ipv4_prefix %d out of range 1..32", r.IPv4Prefix)
		}
		if r.IPv6Prefix < 1 || r.IPv6Prefix > 128 {
			v.errf(p+".ipv6_prefix", "ipv6_prefix %d out of range 1..128", r.IPv6Prefix)
		}
		switch r.Algorithm {
		case "sliding_window":
			if r.Burst != r.Limit {
				v.errf(p+".burst", "burst is for algorithm token_bucket only")
			}
		case "token_bucket":
			if r.Burst < 1 {
				v.errf(p+".burst", "burst %d must be at least 1", r.Burst)
			} else if r.Limit > 0 && r.Burst > (1<<62)/max(int64(r.Period.Std())/r.Limit, 1) {
				v.errf(p+".burst", "burst %d of %v each is too large", r.Burst, r.Period.Std()/time.Duration(r.Limit))
			}
			if r.Share != nil && *r.Share {
				v.errf(p+".share", "share is for sliding_window rules only (token buckets count per node)")
			}
		default:
			v.errf(p+".algorithm", "unknown algorithm %q (want sliding_window or token_bucket)", r.Algorithm)
		}
		if r.Limit < 1 {
			v.errf(p+".limit", "limit is required and must be at least 1")
		}
		if d := r.Period.Std(); d < time.Second || d > 24*time.Hour {
			v.errf(p+".period", "period %v out of range 1s..24h", d)
		} else if r.Limit > 0 && d/time.Duration(r.Limit) < time.Microsecond && r.Algorithm == "token_bucket" {
			v.errf(p+".limit", "limit %d per %v refills faster than once a microsecond", r.Limit, d)
		}
		switch r.Mode {
		case "enforce", "log":
		default:
			v.errf(p+".mode", "unknown mode %q (want enforce or log)", r.Mode)
		}
		if r.Keys < 1 || r.Keys > 1<<20 {
			v.errf(p+".keys", "keys %d out of range 1..1048576", r.Keys)
		}
		if d := r.Tarpit.Std(); d < 0 || d > 10*time.Second {
			v.errf(p+".tarpit", "tarpit %v out of range 0..10s", d)
		}
		if r.Status != 429 && r.Status != 503 {
			v.errf(p+".status", "status %d (want 429 or 503)", r.Status)
		}
	}
	return names
}

func checkKeyPart(k string) error {
	name, arg, hasArg := strings.Cut(k, ":")
	switch name {
	case "header", "cookie", "jwt_claim":
		if !hasArg || arg == "" {
			return fmt.Errorf("key part %q needs a name (%s:NAME)", k, name)
		}
		if name == "header" && !validToken(arg) {
			return fmt.Errorf("key part %q: %q is not a field name", k, arg)
		}
		return nil
	}
	for _, p := range RateLimitKeyParts {
		if k == p {
			return nil
		}
	}
	return fmt.Errorf("unknown key part %q (want client_ip, header:NAME, cookie:NAME, path, host, method, jwt_claim:NAME, route or ja4)", k)
}

// rateLimitRefs checks a route's or listener's rate_limits list at path p.
func (v *validator) rateLimitRefs(p string, refs []string, names map[string]bool) {
	seen := map[string]bool{}
	for j, n := range refs {
		q := fmt.Sprintf("%s.rate_limits[%d]", p, j)
		switch {
		case !names[n]:
			v.errf(q, "unknown rate limit %q", n)
		case seen[n]:
			v.errf(q, "rate limit %q listed twice", n)
		}
		seen[n] = true
	}
}

// clientLimits checks a listener's per-client connection and request caps.
func (v *validator) clientLimits(p string, l *ListenerLimits) {
	for name, n := range map[string]int{"max_conns_per_client": l.MaxConnsPerClient, "conn_rate_per_client": l.ConnRatePerClient,
		"accept_rate": l.AcceptRate, "max_requests_per_client": l.MaxRequestsPerClient, "max_body_bytes_per_client": int(min(l.MaxBodyBytesPerClient, 1<<40))} {
		if n < 0 {
			v.errf(p+"."+name, "%s %d must not be negative", name, n)
		}
	}
	if l.ClientIPv4Prefix < 0 || l.ClientIPv4Prefix > 32 {
		v.errf(p+".client_ipv4_prefix", "client_ipv4_prefix %d out of range 1..32", l.ClientIPv4Prefix)
	}
	if l.ClientIPv6Prefix < 0 || l.ClientIPv6Prefix > 128 {
		v.errf(p+".client_ipv6_prefix", "client_ipv6_prefix %d out of range 1..128", l.ClientIPv6Prefix)
	}
	for i, e := range l.ClientExempt {
		if _, err := acl.ParsePrefix(e); err != nil {
			v.errf(fmt.Sprintf("%s.client_exempt[%d]", p, i), "%v", err)
		}
	}
	switch l.ShedResponse {
	case "", "close", "503":
	default:
		v.errf(p+".shed_response", "unknown shed_response %q (want close or 503)", l.ShedResponse)
	}
}

// IPRules allow and deny client addresses. An address is refused when it is in deny (or a
// deny file), or when allow lists anything and the address is in none of it: deny wins. On
// a listener they act on the connection's peer as it connects (a refused connection is
// closed); on a route, on the client address (resolved through trusted proxies), answering
// 403. Files hold one address or CIDR prefix per line ('#' starts a comment) and are re-read
// within 2 seconds of a change; a file that fails to parse keeps the rules in effect.
type IPRules struct {
	Allow      StringList `yaml:"allow"`
	Deny       StringList `yaml:"deny"`
	AllowFiles StringList `yaml:"allow_files"`
	DenyFiles  StringList `yaml:"deny_files"`
}

// Source converts validated rules for package acl.
func (r *IPRules) Source() acl.Source {
	var s acl.Source
	for _, a := range r.Allow {
		if p, err := acl.ParsePrefix(a); err == nil {
			s.Allow = append(s.Allow, p)
		}
	}
	for _, d := range r.Deny {
		if p, err := acl.ParsePrefix(d); err == nil {
			s.Deny = append(s.Deny, p)
		}
	}
	s.AllowFiles, s.DenyFiles = r.AllowFiles, r.DenyFiles
	return s
}

// ipRules checks rules at path p; files must exist and parse.
func (v *validator) ipRules(p string, r *IPRules) {
	if r == nil {
		return
	}
	for name, list := range map[string]StringList{"allow": r.Allow, "deny": r.Deny} {
		for i, e := range list {
			if _, err := acl.ParsePrefix(e); err != nil {
				v.errf(fmt.Sprintf("%s.%s[%d]", p, name, i), "%v", err)
			}
		}
	}
	for name, list := range map[string]StringList{"allow_files": r.AllowFiles, "deny_files": r.DenyFiles} {
		for i, f := range list {
			if _, err := acl.LoadList(f); err != nil {
				v.errf(fmt.Sprintf("%s.%s[%d]", p, name, i), "%v", err)
			}
		}
	}
}

func (r *IPRules) resolvePaths(abs func(*string)) {
	if r == nil {
		return
	}
	for i := range r.AllowFiles {
		abs(&r.AllowFiles[i])
	}
	for i := range r.DenyFiles {
		abs(&r.DenyFiles[i])
	}
}

// Overload configures adaptive protection. The process is overloaded while one of the set
// thresholds is passed (sampled every 250ms); it calms down once every measure has stayed
// under 80% of its threshold for two samples.
type Overload struct {
	// CPU is the share of the CPUs the process may use (GOMAXPROCS) above which it is
	// overloaded, from 0 to 1, e.g. 0.9. Zero means not checked.
	CPU float64 `yaml:"cpu"`
	// Memory is the memory the Go runtime holds above which the process is overloaded,
	// e.g. 3GiB. Zero means not checked.
	Memory Size `yaml:"memory"`
	// QueueDelay is the 99th percentile of how long runnable goroutines wait for a CPU
	// above which the process is overloaded, e.g. 20ms. Zero means not checked.
	QueueDelay Duration `yaml:"queue_delay"`
	// ConnsPerClient: while overloaded, a client address that already holds this many
	// connections gets no new one (shed like the listener's other limits). Zero means 4.
	ConnsPerClient int `yaml:"conns_per_client"`
}

// Enabled reports whether a threshold is set.
func (o *Overload) Enabled() bool { return o.CPU > 0 || o.Memory > 0 || o.QueueDelay > 0 }

func (v *validator) overload() {
	o := &v.c.Overload
	if o.CPU < 0 || o.CPU > 1 {
		v.errf("overload.cpu", "cpu %v out of range 0..1 (a share of GOMAXPROCS)", o.CPU)
	}
	if o.Memory < 0 {
		v.errf("overload.memory", "must not be negative")
	}
	if o.QueueDelay < 0 {
		v.errf("overload.queue_delay", "must not be negative")
	}
	if o.ConnsPerClient < 0 {
		v.errf("overload.conns_per_client", "must not be negative")
	}
	for i := range v.c.Routes {
		switch v.c.Routes[i].Priority {
		case "", "normal", "low":
		default:
			v.errf(fmt.Sprintf("routes[%d].priority", i), "unknown priority %q (want normal or low)", v.c.Routes[i].Priority)
		}
	}
}
