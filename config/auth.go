package config

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/observe"
)

// RouteAuth authenticates a route's requests before its action runs (docs/auth.md). Exactly
// one of Basic, JWT and Forward is set.
type RouteAuth struct {
	// Basic asks for HTTP Basic credentials checked against bcrypt hashes.
	Basic *BasicAuth `yaml:"basic"`
	// JWT requires a JSON Web Token signed by a key of a JWKS.
	JWT *JWTAuth `yaml:"jwt"`
	// Forward asks an authentication service about each request, like NGINX auth_request.
	Forward *ForwardAuth `yaml:"forward"`
}

// BasicAuth configures HTTP Basic authentication (RFC 7617).
type BasicAuth struct {
	// Realm is the realm of the WWW-Authenticate challenge. Empty means "restricted".
	Realm string `yaml:"realm"`
	// Users maps user names to bcrypt hashes ("$2a$", "$2b$" or "$2y$"), e.g. made by
	// `htpasswd -nbB user password`.
	Users map[string]string `yaml:"users"`
	// UsersFile is an htpasswd-style file of "user:bcrypt-hash" lines (# comments and blank
	// lines skipped), read at load and at each reload. Users and UsersFile may be combined;
	// at least one user is required.
	UsersFile string `yaml:"users_file"`
	// UserHeader, when set, carries the authenticated user name upstream; a client's own
	// field of that name is removed first. Empty means none.
	UserHeader string `yaml:"user_header"`
}

// JWTAuth configures JSON Web Token validation (RFC 7519) against a JSON Web Key Set.
type JWTAuth struct {
	// JWKSURL is where the key set is fetched (http or https). Required.
	JWKSURL string `yaml:"jwks_url"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, lists accepted values; the token's aud must contain one of them.
	Audience StringList `yaml:"audience"`
	// Algorithms lists the accepted signature algorithms: RS256, RS384, RS512, PS256,
	// PS384, PS512, ES256, ES384, ES512, EdDSA. Empty means [RS256, ES256]. HMAC (HS*) and
	// "none" are refused: a key set is public.
	Algorithms StringList `yaml:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means 30s; at most 5m.
	Leeway Duration `yaml:"leeway"`
	// Cookie, when set, is a cookie the token may come in, when there is no
	// "Authorization: Bearer" field.
	Cookie string `yaml:"cookie"`
	// Header, when set, is a field the token comes in (its whole value) instead of
	// Authorization.
	Header string `yaml:"header"`
	// ClaimsToHeaders maps claim names to request fields sent upstream (string, number and
	// boolean claims; lists joined by ", "). The fields are removed from the client's request
	// first, so a client cannot forge them.
	ClaimsToHeaders map[string]string `yaml:"claims_to_headers"`
	// CacheMin and CacheMax bound how long a fetched key set is used: its Cache-Control
	// max-age clamped to them. Zero means 1m and 24h.
	CacheMin Duration `yaml:"cache_min"`
	CacheMax Duration `yaml:"cache_max"`
	// RefetchInterval is the least time between two fetches caused by a token whose kid is
	// not in the set (key rotation). Zero means 30s.
	RefetchInterval Duration `yaml:"refetch_interval"`
	// FetchTimeout bounds one fetch of the key set. Zero means 5s.
	FetchTimeout Duration `yaml:"fetch_timeout"`
}

// ForwardAuth asks an authentication service whether a request may pass.
type ForwardAuth struct {
	// URL is the service's address (http or https); it receives a GET with the request's
	// fields and X-Forwarded-Method, -Proto, -Host, -Uri, X-Original-URI and X-Forwarded-For.
	// Required.
	URL string `yaml:"url"`
	// Timeout bounds the question. Zero means 5s; a timeout answers 503.
	Timeout Duration `yaml:"timeout"`
	// CopyHeaders lists fields of the service's 2xx answer copied to the upstream request
	// (removed from the client's request first). Empty means none.
	CopyHeaders StringList `yaml:"copy_headers"`
	// Cache keeps a 2xx answer for this long, keyed by the request's Authorization and
	// Cookie fields; only 2xx answers are kept. Zero means no cache; at most 5m.
	Cache Duration `yaml:"cache"`
}

// CORS answers cross-origin preflights and marks allowed responses (docs/auth.md).
type CORS struct {
	// AllowOrigins lists allowed origins: exact ("https://app.example.com"), a wildcard
	// subdomain ("https://*.example.com", which does not match the bare domain) or "*" (any
	// origin, not with allow_credentials). Required.
	AllowOrigins StringList `yaml:"allow_origins"`
	// AllowMethods lists the methods a preflight may ask for. Empty means GET, HEAD, POST.
	AllowMethods StringList `yaml:"allow_methods"`
	// AllowHeaders lists request fields a preflight may ask for. Empty means none beyond the
	// CORS-safelisted ones.
	AllowHeaders StringList `yaml:"allow_headers"`
	// ExposeHeaders lists response fields scripts may read. Empty means none.
	ExposeHeaders StringList `yaml:"expose_headers"`
	// AllowCredentials allows cookies and Authorization on cross-origin requests.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long a browser may cache a preflight answer. Zero means 5s (the
	// browsers' own default); at most 24h.
	MaxAge Duration `yaml:"max_age"`
}

// Rewrite changes the path sent upstream: first StripPrefix, then Regex/To, then AddPrefix.
// The query is kept. The access log shows the path the client sent.
type Rewrite struct {
	// StripPrefix is removed from the start of the path when present ("/api" turns
	// "/api/x" into "/x" and "/api" into "/").
	StripPrefix string `yaml:"strip_prefix"`
	// Regex, an RE2 expression, replaces the path with To when it matches; To may use $1,
	// ${name} captures.
	Regex string `yaml:"regex"`
	To    string `yaml:"to"`
	// AddPrefix is put in front of the path.
	AddPrefix string `yaml:"add_prefix"`
}

// RequestID configures request IDs (docs/rewrites.md, "Request IDs").
type RequestID struct {
	// Enabled generates an ID for every request that has none: a random UUID (version 4).
	Enabled bool `yaml:"enabled"`
	// Header is the field carrying it. Empty means X-Request-ID.
	Header string `yaml:"header"`
	// Trust says whose IDs are kept: "trusted_proxies" (the listener's trusted proxies'),
	// "all" or "none" (always a new one). Empty means trusted_proxies.
	Trust string `yaml:"trust"`
	// Response also returns the ID on the response. Nil means true.
	Response *bool `yaml:"response"`
}

// HeaderRule is a set of header operations applied only when When holds.
type HeaderRule struct {
	// When is the condition; all of its fields must hold.
	When HeaderCondition `yaml:"when"`
	// Add, Set and Remove are applied like those of HeaderOps.
	Add    map[string]string `yaml:"add"`
	Set    map[string]string `yaml:"set"`
	Remove []string          `yaml:"remove"`
}

// HeaderCondition is the condition of a HeaderRule.
type HeaderCondition struct {
	// Status lists response statuses: codes, ranges and classes ("404", "500-599",
	// "4xx,5xx"). Only in response_headers. Empty means any.
	Status string `yaml:"status"`
	// PathPrefix requires the request path to start with it. Empty means any.
	PathPrefix string `yaml:"path_prefix"`
	// Headers maps field names to the exact value required, "*" for presence only: of the
	// response in response_headers, of the request in request_headers.
	Headers map[string]string `yaml:"headers"`
}

var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// setAuthDefaults applies the defaults of the auth, cors, rewrite and request_id sections.
func (c *Config) setAuthDefaults() {
	for i := range c.Routes {
		r := &c.Routes[i]
		if a := r.Auth; a != nil {
			if b := a.Basic; b != nil && b.Realm == "" {
				b.Realm = "restricted"
			}
			if j := a.JWT; j != nil {
				if len(j.Algorithms) == 0 {
					j.Algorithms = StringList{"RS256", "ES256"}
				}
				j.Leeway = orDuration(j.Leeway, 30*time.Second)
				j.CacheMin = orDuration(j.CacheMin, time.Minute)
				j.CacheMax = orDuration(j.CacheMax, 24*time.Hour)
				j.RefetchInterval = orDuration(j.RefetchInterval, 30*time.Second)
				j.FetchTimeout = orDuration(j.FetchTimeout, 5*time.Second)
			}
			if f := a.Forward; f != nil {
				f.Timeout = orDuration(f.Timeout, 5*time.Second)
			}
		}
		if cr := r.CORS; cr != nil {
			if len(cr.AllowMethods) == 0 {
				cr.AllowMethods = StringList{"GET", "HEAD", "POST"}
			}
			cr.MaxAge = orDuration(cr.MaxAge, 5*time.Second)
		}
	}
	{
		id := &c.RequestID
		if id.Header == "" {
			id.Header = "X-Request-ID"
		}
		if id.Trust == "" {
			id.Trust = "trusted_proxies"
		}
		if id.Response == nil {
			id.Response = ptr(true)
		}
	}
}

// resolveAuthPaths makes the users files relative to the config file absolute.
func (c *Config) resolveAuthPaths(abs func(*string)) {
	for i := range c.Routes {
		if a := c.Routes[i].Auth; a != nil && a.Basic != nil {
			abs(&a.Basic.UsersFile)
		}
	}
}

// validateAuth checks the auth, cors, rewrite, header-rule, request_id and access-log
// template settings.
func (v *validator) validateAuth() {
	for i := range v.c.Routes {
		r := &v.c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		if r.Auth != nil {
			v.routeAuth(p+".auth", r.Auth)
		}
		if r.CORS != nil {
			v.cors(p+".cors", r.CORS)
		}
		if r.Rewrite != nil {
			if r.Files != nil {
				v.errf(p+".rewrite", "rewrite changes the request sent upstream; a files route serves the request path under its root (point root at the directory the path names)")
			} else {
				v.rewrite(p+".rewrite", r.Rewrite)
			}
		}
		v.headerRules(p+".request_headers.rules", r.RequestHeaders.Rules, false)
		v.headerRules(p+".response_headers.rules", r.ResponseHeaders.Rules, true)
	}
	id := &v.c.RequestID
	if !validToken(id.Header) {
		v.errf("request_id.header", "invalid header name %q", id.Header)
	}
	switch id.Trust {
	case "trusted_proxies", "all", "none":
	default:
		v.errf("request_id.trust", "unknown trust %q (want trusted_proxies, all or none)", id.Trust)
	}
}

func (v *validator) routeAuth(p string, a *RouteAuth) {
	n := 0
	if a.Basic != nil {
		n++
		v.basicAuth(p+".basic", a.Basic)
	}
	if a.JWT != nil {
		n++
		v.jwtAuth(p+".jwt", a.JWT)
	}
	if a.Forward != nil {
		n++
		v.forwardAuth(p+".forward", a.Forward)
	}
	if n != 1 {
		v.errf(p, "exactly one of basic, jwt and forward is required")
	}
}

func (v *validator) basicAuth(p string, b *BasicAuth) {
	if strings.ContainsAny(b.Realm, "\"\\\r\n\x00") {
		v.errf(p+".realm", "realm must not contain quotes, backslashes or line breaks")
	}
	for u, h := range b.Users {
		if err := checkBasicUser(u, h); err != nil {
			v.errf(p+".users."+u, "%v", err)
		}
	}
	n := len(b.Users)
	all := map[string]string{}
	if b.UsersFile != "" {
		users, err := ReadHtpasswd(b.UsersFile)
		if err != nil {
			v.errf(p+".users_file", "%v", err)
		}
		n += len(users)
		maps.Copy(all, users)
	}
	maps.Copy(all, b.Users)
	v.basicCosts(p, b, all)
	if n == 0 && b.UsersFile == "" {
		v.errf(p+".users", "at least one user (users or users_file) is required")
	}
	if b.UserHeader != "" && !validToken(b.UserHeader) {
		v.errf(p+".user_header", "invalid header name %q", b.UserHeader)
	}
}

// basicCosts requires one bcrypt cost for every user. An unknown user is compared against a
// dummy hash of the highest cost; a known user with a lower cost would answer a wrong
// password sooner, telling an attacker which user names exist.
func (v *validator) basicCosts(p string, b *BasicAuth, users map[string]string) {
	var first string
	for _, u := range slices.Sorted(maps.Keys(users)) {
		h := users[u]
		if len(h) != 60 {
			continue // reported by checkBasicUser
		}
		if first == "" {
			first = u
			continue
		}
		if c, c0 := h[4:6], users[first][4:6]; c != c0 {
			field := p + ".users"
			if _, ok := b.Users[u]; !ok {
				field = p + ".users_file"
			} else {
				field += "." + u
			}
			v.errf(field, "user %q has bcrypt cost %s but user %q cost %s: every user must have the same cost, "+
				"or the time a wrong password takes tells which user names exist (rehash with `htpasswd -nbB -C %s`)",
				u, c, first, c0, max(c, c0))
			return
		}
	}
}

func checkBasicUser(user, hash string) error {
	if user == "" || strings.ContainsAny(user, ":\r\n\x00") {
		return fmt.Errorf("invalid user name %q", user)
	}
	if !(strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")) || len(hash) != 60 {
		return fmt.Errorf("user %q: the password must be a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters), e.g. from `htpasswd -nbB user password`", user)
	}
	return nil
}

// ReadHtpasswd reads an htpasswd-style file of "user:bcrypt-hash" lines. Blank lines and
// lines starting with # are skipped. Other hash schemes (MD5, SHA-1, crypt) are refused.
func ReadHtpasswd(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	users := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		u, h, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want user:bcrypt-hash", path, i+1)
		}
		if err := checkBasicUser(u, h); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		if _, dup := users[u]; dup {
			return nil, fmt.Errorf("%s:%d: user %q listed twice", path, i+1, u)
		}
		users[u] = h
	}
	return users, nil
}

func (v *validator) jwtAuth(p string, j *JWTAuth) {
	if j.JWKSURL == "" {
		v.errf(p+".jwks_url", "jwks_url is required")
	} else if err := checkHTTPURL(j.JWKSURL); err != nil {
		v.errf(p+".jwks_url", "%v", err)
	}
	for i, a := range j.Algorithms {
		if !slices.Contains(jwtAlgorithms, a) {
			why := ""
			if strings.HasPrefix(a, "HS") || strings.EqualFold(a, "none") {
				why = ": HMAC and none are refused, a key set is public and accepting them would let anyone sign tokens"
			}
			v.errf(fmt.Sprintf("%s.algorithms[%d]", p, i), "algorithm %q not allowed (want one of %s)%s", a, strings.Join(jwtAlgorithms, ", "), why)
		}
	}
	if j.Leeway < 0 || j.Leeway.Std() > 5*time.Minute {
		v.errf(p+".leeway", "leeway %s out of range 0..5m", j.Leeway)
	}
	if j.Cookie != "" && !validToken(j.Cookie) {
		v.errf(p+".cookie", "invalid cookie name %q", j.Cookie)
	}
	if j.Header != "" && !validToken(j.Header) {
		v.errf(p+".header", "invalid header name %q", j.Header)
	}
	for claim, h := range j.ClaimsToHeaders {
		if claim == "" {
			v.errf(p+".claims_to_headers", "empty claim name")
		}
		if !validToken(h) {
			v.errf(p+".claims_to_headers."+claim, "invalid header name %q", h)
		}
	}
	if j.CacheMin > j.CacheMax {
		v.errf(p+".cache_min", "cache_min %s is above cache_max %s", j.CacheMin, j.CacheMax)
	}
	if j.RefetchInterval.Std() < time.Second {
		v.errf(p+".refetch_interval", "refetch_interval must be at least 1s (it bounds fetches a client can cause)")
	}
	if j.FetchTimeout.Std() > time.Minute {
		v.errf(p+".fetch_timeout", "fetch_timeout %s is above 1m", j.FetchTimeout)
	}
}

func (v *validator) forwardAuth(p string, f *ForwardAuth) {
	if f.URL == "" {
		v.errf(p+".url", "url is required")
	} else if err := checkHTTPURL(f.URL); err != nil {
		v.errf(p+".url", "%v", err)
	}
	if f.Timeout.Std() > time.Minute {
		v.errf(p+".timeout", "timeout %s is above 1m", f.Timeout)
	}
	if f.Cache < 0 || f.Cache.Std() > 5*time.Minute {
		v.errf(p+".cache", "cache %s out of range 0..5m", f.Cache)
	}
	for i, h := range f.CopyHeaders {
		if !validToken(h) {
			v.errf(fmt.Sprintf("%s.copy_headers[%d]", p, i), "invalid header name %q", h)
		}
	}
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	return nil
}

func (v *validator) cors(p string, c *CORS) {
	if len(c.AllowOrigins) == 0 {
		v.errf(p+".allow_origins", "at least one origin is required")
	}
	for i, o := range c.AllowOrigins {
		op := fmt.Sprintf("%s.allow_origins[%d]", p, i)
		if o == "*" {
			if c.AllowCredentials {
				v.errf(op, `"*" with allow_credentials would let every site read responses with the user's cookies; list the origins`)
			}
			continue
		}
		if err := checkOrigin(o); err != nil {
			v.errf(op, "%v", err)
		}
	}
	for i, m := range c.AllowMethods {
		if !validToken(m) || strings.ToUpper(m) != m {
			v.errf(fmt.Sprintf("%s.allow_methods[%d]", p, i), "invalid method %q (methods are upper case)", m)
		}
	}
	for i, h := range c.AllowHeaders {
		if !validToken(h) {
			v.errf(fmt.Sprintf("%s.allow_headers[%d]", p, i), "invalid header name %q", h)
		}
	}
	for i, h := range c.ExposeHeaders {
		if !validToken(h) {
			v.errf(fmt.Sprintf("%s.expose_headers[%d]", p, i), "invalid header name %q", h)
		}
	}
	if c.MaxAge < 0 || c.MaxAge.Std() > 24*time.Hour {
		v.errf(p+".max_age", "max_age %s out of range 0..24h", c.MaxAge)
	}
}

// checkOrigin validates scheme://host[:port], the host possibly starting with "*.".
func checkOrigin(o string) error {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "/?#@ ") {
		return fmt.Errorf("origin %q: want scheme://host[:port] (no path), e.g. https://app.example.com or https://*.example.com", o)
	}
	host := strings.TrimPrefix(rest, "*.")
	if strings.Contains(host, "*") {
		return fmt.Errorf("origin %q: a wildcard may only be the first label (https://*.example.com)", o)
	}
	if strings.ToLower(o) != o {
		return fmt.Errorf("origin %q: origins are lower case", o)
	}
	return nil
}

func (v *validator) rewrite(p string, rw *Rewrite) {
	for _, f := range []struct{ name, val string }{{"strip_prefix", rw.StripPrefix}, {"add_prefix", rw.AddPrefix}} {
		if f.val != "" && (!strings.HasPrefix(f.val, "/") || strings.ContainsAny(f.val, "?# \r\n\x00")) {
			v.errf(p+"."+f.name, "%s must be a path starting with / (no query)", f.name)
		}
	}
	if (rw.Regex == "") != (rw.To == "") {
		v.errf(p+".regex", "regex and to go together")
	} else if rw.Regex != "" {
		re, err := regexp.Compile(rw.Regex)
		if err != nil {
			v.errf(p+".regex", "%v", err)
		} else if err := checkExpandRefs(re, rw.To); err != nil {
			v.errf(p+".to", "%v", err)
		}
		if strings.ContainsAny(rw.To, " \r\n\x00") {
			v.errf(p+".to", "to must not contain spaces or line breaks")
		}
	}
	if rw.StripPrefix == "" && rw.Regex == "" && rw.AddPrefix == "" {
		v.errf(p, "one of strip_prefix, regex and add_prefix is required")
	}
}

// checkExpandRefs checks that every $n and ${name} of to names a group of re.
func checkExpandRefs(re *regexp.Regexp, to string) error {
	names := re.SubexpNames()
	for i := 0; i < len(to); i++ {
		if to[i] != '$' || i+1 == len(to) {
			continue
		}
		if to[i+1] == '$' {
			i++
			continue
		}
		var name string
		if to[i+1] == '{' {
			j := strings.IndexByte(to[i:], '}')
			if j < 0 {
				return fmt.Errorf("unclosed ${ in %q", to)
			}
			name, i = to[i+2:i+j], i+j
		} else {
			j := i + 1
			for j < len(to) && (to[j] >= '0' && to[j] <= '9' || to[j] >= 'a' && to[j] <= 'z' || to[j] >= 'A' && to[j] <= 'Z' || to[j] == '_') {
				j++
			}
			name, i = to[i+1:j], j-1
		}
		if k, err := strconv.Atoi(name); err == nil {
			if k >= len(names) {
				return fmt.Errorf("$%s: the expression has %d groups", name, len(names)-1)
			}
			continue
		}
		if name == "" || !slices.Contains(names, name) {
			return fmt.Errorf("$%s names no group of the expression (write $$ for a dollar sign)", name)
		}
	}
	return nil
}

func (v *validator) headerRules(p string, rules []HeaderRule, response bool) {
	for i := range rules {
		r := &rules[i]
		rp := fmt.Sprintf("%s[%d]", p, i)
		if r.When.Status != "" {
			if !response {
				v.errf(rp+".when.status", "status is a condition of response_headers only")
			} else if err := checkStatusSet(r.When.Status); err != nil {
				v.errf(rp+".when.status", "%v", err)
			}
		}
		if r.When.PathPrefix != "" && !strings.HasPrefix(r.When.PathPrefix, "/") {
			v.errf(rp+".when.path_prefix", "path_prefix must start with /")
		}
		v.fieldNames(rp+".when.headers", r.When.Headers)
		v.headerOps(rp, &HeaderOps{Add: r.Add, Set: r.Set, Remove: r.Remove})
	}
}

func (v *validator) accessLogFormat(a *AccessLog) {
	switch a.Format {
	case "json", "text", "combined":
		if a.Template != "" {
			v.errf("access_log.template", "template needs format: template")
		}
		if a.Format == "combined" && len(a.Fields) > 0 {
			v.errf("access_log.fields", "fields do not apply to format combined (its fields are fixed)")
		}
	case "template":
		if a.Template == "" {
			v.errf("access_log.template", "format template needs a template, e.g. '{client} {method} {uri} {status} {duration_ms}'")
		} else if err := observe.ValidateTemplate(a.Template); err != nil {
			v.errf("access_log.template", "%v", strings.TrimPrefix(err.Error(), "access log template: "))
		}
		if len(a.Fields) > 0 {
			v.errf("access_log.fields", "fields do not apply to format template (the template names its fields)")
		}
	default:
		v.errf("access_log.format", "unknown format %q (want json, text, combined or template)", a.Format)
	}
}
