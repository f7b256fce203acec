package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/verge-edge/verge/observe"
)

// validator collects the problems of a defaulted config.
type validator struct {
	c           *Config
	errs        ErrorList
	workerNames map[string]bool
	// standalone is set for a worker file (ParseWorker): service targets are not checked.
	standalone bool
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.File, Pos: v.c.at(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() ErrorList {
	v := &validator{c: c}
	rateLimits := v.rateLimits()
	v.overload()
	v.listeners()
	for i, l := range c.Listeners {
		v.rateLimitRefs(fmt.Sprintf("listeners[%d]", i), l.RateLimits, rateLimits)
		v.ipRules(fmt.Sprintf("listeners[%d].ip_rules", i), l.IPRules)
	}
	for i, r := range c.Routes {
		v.rateLimitRefs(fmt.Sprintf("routes[%d]", i), r.RateLimits, rateLimits)
		v.ipRules(fmt.Sprintf("routes[%d].ip_rules", i), r.IPRules)
	}
	groups := v.upstreams()
	aiProviders := v.aiProviders()
	v.workerNames = v.workers()
	v.containerRuntime()
	v.workerAI(aiProviders)
	v.routes(groups, aiProviders)
	v.trustedProxies("trusted_proxies", c.TrustedProxies)
	v.proxyProtocol()
	v.l4(groups)
	v.admin()
	v.accessLog()
	v.log()
	v.cache()
	v.htmlRewrite()
	v.cluster()
	v.validateAuth()
	return v.errs
}

func (v *validator) listeners() {
	c := v.c
	if len(c.Listeners) == 0 && len(c.L4) == 0 {
		v.errf("listeners", "at least one listener is required")
	}
	names := map[string]int{}
	type bound struct {
		port int
		host string
		idx  int
	}
	var addrs []bound
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		if j, dup := names[l.Name]; dup {
			v.errf(p+".name", "duplicate listener name %q (also listeners[%d])", l.Name, j)
		} else {
			names[l.Name] = i
		}
		if l.Address == "" {
			v.errf(p+".address", "address is required")
		} else if host, port, err := splitAddr(l.Address); err != nil {
			v.errf(p+".address", "%v", err)
		} else {
			for _, b := range addrs {
				if b.port == port && (b.host == host || isWildcard(b.host) || isWildcard(host)) {
					v.errf(p+".address", "address %s conflicts with listeners[%d]", l.Address, b.idx)
				}
			}
			addrs = append(addrs, bound{port, host, i})
		}
		for j, proto := range l.Protocols {
			if proto != "h1" && proto != "h2" {
				v.errf(fmt.Sprintf("%s.protocols[%d]", p, j), "unknown protocol %q (want h1 or h2)", proto)
			}
		}
		if !slices.Contains(l.Protocols, "h1") {
			v.errf(p+".protocols", "h1 is required (h2 is served next to it)")
		}
		if h := &l.HTTP3; h.Enabled && l.TLS == nil {
			v.errf(p+".http3.enabled", "http3 needs tls")
		}
		if h := &l.HTTP3; h.MaxStreams < 0 || h.MaxHandshakes < 0 || h.RetryThreshold < -1 ||
			h.IdleTimeout < 0 || h.HandshakeTimeout < 0 || h.AltSvcMaxAge < 0 {
			v.errf(p+".http3", "limits and timeouts must not be negative (retry_threshold: -1 means always)")
		}
		v.clientLimits(p+".limits", &l.Limits)
		if l.MaxConns < 0 {
			v.errf(p+".max_conns", "must not be negative")
		}
		v.trustedProxies(p+".trusted_proxies", l.TrustedProxies)
		if l.TrustForwarded && len(l.TrustedProxies) > 0 {
			v.errf(p+".trust_forwarded", "trust_forwarded trusts every peer; use it or trusted_proxies, not both")
		}
		if l.Limits.MaxHeaders < 0 {
			v.errf(p+".limits.max_headers", "must not be negative")
		}
		if l.Limits.MaxRequestLine > l.Limits.MaxHeaderBytes {
			v.errf(p+".limits.max_request_line", "is larger than max_header_bytes (%d)", l.Limits.MaxHeaderBytes)
		}
		if l.TLS != nil {
			v.listenerTLS(p+".tls", l.TLS)
			if l.TLS.ACME != nil {
				v.validateACME(p+".tls.acme", l)
			}
		}
		v.validateRedirectHTTPS(p, l)
	}
}

func (v *validator) listenerTLS(p string, t *ListenerTLS) {
	if len(t.Certificates) == 0 && t.ACME == nil {
		v.errf(p+".certificates", "at least one certificate is required (or acme)")
	}
	for i, c := range t.Certificates {
		cp := fmt.Sprintf("%s.certificates[%d]", p, i)
		switch {
		case c.Cert == "":
			v.errf(cp+".cert", "cert is required")
		case c.Key == "":
			v.errf(cp+".key", "key is required")
		default:
			if _, err := LoadCertificate(c.Cert, c.Key); err != nil {
				v.errf(cp+".cert", "%v", err)
			}
		}
	}
	if _, err := TLSVersion(t.MinVersion); err != nil {
		v.errf(p+".min_version", "%v", err)
	}
	if ca := t.ClientAuth; ca != nil {
		if ca.Mode != "require" && ca.Mode != "request" {
			v.errf(p+".client_auth.mode", "unknown mode %q (want require or request)", ca.Mode)
		}
		if ca.CA == "" {
			v.errf(p+".client_auth.ca", "ca is required")
		} else if _, err := LoadCAPool(ca.CA); err != nil {
			v.errf(p+".client_auth.ca", "%v", err)
		}
	}
}

var policies = []string{"round_robin", "weighted", "random", "p2c", "least_conn", "consistent_hash"}

func (v *validator) upstreams() map[string]bool {
	groups := map[string]bool{}
	for i := range v.c.Upstreams {
		u := &v.c.Upstreams[i]
		p := fmt.Sprintf("upstreams[%d]", i)
		switch {
		case u.Name == "":
			v.errf(p+".name", "name is required")
		case groups[u.Name]:
			v.errf(p+".name", "duplicate upstream group %q", u.Name)
		}
		groups[u.Name] = true
		switch {
		case len(u.Servers) > 0 && u.DNS != nil:
			v.errf(p+".dns", "servers and dns are exclusive")
		case len(u.Servers) == 0 && u.DNS == nil:
			v.errf(p+".servers", "servers or dns is required")
		}
		seen := map[string]bool{}
		for j, s := range u.Servers {
			sp := fmt.Sprintf("%s.servers[%d]", p, j)
			if s.Address == "" {
				v.errf(sp+".address", "address is required")
			} else if host, _, err := splitAddr(s.Address); err != nil {
				v.errf(sp+".address", "%v", err)
			} else if host == "" {
				v.errf(sp+".address", "address %q needs a host", s.Address)
			} else if seen[s.Address] {
				v.errf(sp+".address", "duplicate server %s", s.Address)
			}
			seen[s.Address] = true
			if s.Weight < 1 || s.Weight > 1000 {
				v.errf(sp+".weight", "weight %d out of range 1..1000", s.Weight)
			}
		}
		if d := u.DNS; d != nil {
			if d.Name == "" {
				v.errf(p+".dns.name", "name is required")
			}
			switch d.Type {
			case "A", "AAAA", "A/AAAA":
				if d.Port < 1 || d.Port > 65535 {
					v.errf(p+".dns.port", "port 1..65535 is required for %s records", d.Type)
				}
			case "SRV":
			default:
				v.errf(p+".dns.type", "unknown record type %q (want A, AAAA, A/AAAA or SRV)", d.Type)
			}
		}
		if !slices.Contains(policies, u.Policy) {
			v.errf(p+".policy", "unknown policy %q (want one of %s)", u.Policy, strings.Join(policies, ", "))
		}
		if u.HashKey != "" {
			if u.Policy != "consistent_hash" {
				v.errf(p+".hash_key", "hash_key applies only to policy consistent_hash")
			} else if name, ok := strings.CutPrefix(u.HashKey, "header:"); ok {
				if !validToken(name) {
					v.errf(p+".hash_key", "invalid header name %q", name)
				}
			} else if u.HashKey != "client_ip" && u.HashKey != "path" {
				v.errf(p+".hash_key", "unknown hash key %q (want client_ip, path or header:<Name>)", u.HashKey)
			}
		}
		switch u.Protocol {
		case "h1", "h2c", "h3":
		case "h2":
			if u.TLS == nil {
				v.errf(p+".protocol", "h2 needs tls; use h2c for HTTP/2 in plain text")
			}
		default:
			v.errf(p+".protocol", "unknown protocol %q (want h1, h2, h2c or h3)", u.Protocol)
		}
		if u.Protocol == "h2c" && u.TLS != nil {
			v.errf(p+".protocol", "h2c is plain text; use h2 with tls")
		}
		if h := u.HealthCheck; h != nil {
			v.healthCheck(p+".health_check", h)
		}
		if t := u.TLS; t != nil {
			v.upstreamTLS(p+".tls", t)
		}
		if u.Host != "" && strings.ContainsAny(u.Host, " \t\r\n/") {
			v.errf(p+".host", "invalid host %q", u.Host)
		}
		if u.Timeouts.Connect > u.Timeouts.Total && u.Timeouts.Total > 0 {
			v.errf(p+".timeouts.total", "is shorter than timeouts.connect")
		}
	}
	return groups
}

func (v *validator) healthCheck(p string, h *HealthCheck) {
	switch h.Type {
	case "tcp", "http", "tls":
	default:
		v.errf(p+".type", "unknown health check type %q (want tcp, http or tls)", h.Type)
	}
	if !strings.HasPrefix(h.Path, "/") {
		v.errf(p+".path", "path must start with /")
	}
	if err := checkStatusSet(h.ExpectStatus); err != nil {
		v.errf(p+".expect_status", "%v", err)
	}
	if h.Rise < 1 {
		v.errf(p+".rise", "must be at least 1")
	}
	if h.Fall < 1 {
		v.errf(p+".fall", "must be at least 1")
	}
	if h.Timeout > h.Interval {
		v.errf(p+".timeout", "is longer than interval (%s)", h.Interval)
	}
}

// checkStatusSet validates "200", "200-299", "2xx", comma-separated.
func checkStatusSet(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if len(item) == 3 && item[1:] == "xx" && item[0] >= '1' && item[0] <= '5' {
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
			return fmt.Errorf("invalid status %q (want e.g. 200, 200-299, 2xx)", item)
		}
	}
	return nil
}

func (v *validator) upstreamTLS(p string, t *UpstreamTLS) {
	if t.CA != "" {
		if _, err := LoadCAPool(t.CA); err != nil {
			v.errf(p+".ca", "%v", err)
		}
	}
	switch {
	case t.ClientCert != "" && t.ClientKey == "":
		v.errf(p+".client_key", "client_key is required with client_cert")
	case t.ClientCert == "" && t.ClientKey != "":
		v.errf(p+".client_cert", "client_cert is required with client_key")
	case t.ClientCert != "":
		if _, err := LoadCertificate(t.ClientCert, t.ClientKey); err != nil {
			v.errf(p+".client_cert", "%v", err)
		}
	}
}

func (v *validator) routes(groups, aiProviders map[string]bool) {
	listeners := map[string]bool{}
	for _, l := range v.c.Listeners {
		listeners[l.Name] = true
	}
	names := map[string]int{}
	for i := range v.c.Routes {
		r := &v.c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		if j, dup := names[r.Name]; dup {
			v.errf(p+".name", "duplicate route name %q (also routes[%d])", r.Name, j)
		} else {
			names[r.Name] = i
		}
		for j, l := range r.Listeners {
			if !listeners[l] {
				v.errf(fmt.Sprintf("%s.listeners[%d]", p, j), "unknown listener %q", l)
			}
		}
		v.match(p+".match", &r.Match)
		actions := 0
		if r.Upstream != "" {
			actions++
			if !groups[r.Upstream] {
				v.errf(p+".upstream", "unknown upstream group %q", r.Upstream)
			}
		}
		if rd := r.Redirect; rd != nil {
			actions++
			if rd.To == "" {
				v.errf(p+".redirect.to", "to is required")
			} else if err := checkTemplate(rd.To); err != nil {
				v.errf(p+".redirect.to", "%v", err)
			}
			switch rd.Status {
			case 301, 302, 303, 307, 308:
			default:
				v.errf(p+".redirect.status", "redirect status %d (want 301, 302, 303, 307 or 308)", rd.Status)
			}
		}
		if rs := r.Respond; rs != nil {
			actions++
			if rs.Status < 200 || rs.Status > 599 {
				v.errf(p+".respond.status", "status %d out of range 200..599", rs.Status)
			}
			v.fieldNames(p+".respond.headers", rs.Headers)
		}
		actions += v.routeWorker(p, r, v.workerNames)
		actions += v.routeFiles(p, r)
		actions += v.routeAIGateway(p, r, aiProviders)
		switch {
		case actions == 0:
			v.errf(p, "one of upstream, worker, files, ai_gateway, redirect or respond is required")
		case actions > 1:
			v.errf(p, "upstream, worker, files, ai_gateway, redirect and respond are exclusive")
		}
		v.headerOps(p+".request_headers", &r.RequestHeaders)
		v.headerOps(p+".response_headers", &r.ResponseHeaders)
		if *r.Retries < 0 || *r.Retries > 10 {
			v.errf(p+".retries", "retries %d out of range 0..10", *r.Retries)
		}
		for j, u := range *r.Upgrades {
			if err := validUpgrade(u); err != nil {
				v.errf(fmt.Sprintf("%s.upgrades[%d]", p, j), "%v", err)
			}
		}
	}
}

func (v *validator) match(p string, m *Match) {
	for i, h := range m.Host {
		if err := checkHostPattern(h); err != nil {
			v.errf(fmt.Sprintf("%s.host[%d]", p, i), "%v", err)
		}
	}
	if m.Path != "" && m.PathPrefix != "" {
		v.errf(p+".path", "path and path_prefix are exclusive")
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		v.errf(p+".path", "path must start with /")
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		v.errf(p+".path_prefix", "path_prefix must start with /")
	}
	for i, meth := range m.Methods {
		if !validToken(meth) || strings.ToUpper(meth) != meth {
			v.errf(fmt.Sprintf("%s.methods[%d]", p, i), "invalid method %q (methods are upper case)", meth)
		}
	}
	v.fieldNames(p+".headers", m.Headers)
}

func (v *validator) headerOps(p string, h *HeaderOps) {
	v.fieldNames(p+".add", h.Add)
	v.fieldNames(p+".set", h.Set)
	for i, name := range h.Remove {
		if !validToken(name) {
			v.errf(fmt.Sprintf("%s.remove[%d]", p, i), "invalid header name %q", name)
		}
	}
}

func (v *validator) fieldNames(p string, m map[string]string) {
	for name, val := range m {
		if !validToken(name) {
			v.errf(p+"."+name, "invalid header name %q", name)
		} else if strings.ContainsAny(val, "\r\n\x00") {
			v.errf(p+"."+name, "header value must not contain CR, LF or NUL")
		}
	}
}

func (v *validator) admin() {
	a := &v.c.Admin
	if a.Disabled {
		return
	}
	if _, _, err := splitAddr(a.Address); err != nil {
		v.errf("admin.address", "%v", err)
	}
	if a.Token != "" && a.TokenFile != "" {
		v.errf("admin.token_file", "token and token_file are exclusive")
	}
	if a.Token != "" && len(a.Token) < MinAdminTokenBytes {
		v.errf("admin.token", "token is %d bytes; at least %d are required", len(a.Token), MinAdminTokenBytes)
	}
	if a.TokenFile != "" {
		if tok, err := ReadToken(a.TokenFile); err != nil {
			v.errf("admin.token_file", "%v", err)
		} else if len(tok) < MinAdminTokenBytes {
			v.errf("admin.token_file", "the token in %s is %d bytes; at least %d are required", a.TokenFile, len(tok), MinAdminTokenBytes)
		}
	}
	if host, _, err := splitAddr(a.Address); err == nil && a.Token == "" && a.TokenFile == "" && !isLoopbackHost(host) {
		v.errf("admin.address", "admin address %s is not loopback and no admin.token or admin.token_file is set: "+
			"the admin API can replace the configuration, so Verge refuses to expose it without a token "+
			"(set a token of at least %d bytes, or listen on 127.0.0.1)", a.Address, MinAdminTokenBytes)
	}
	for i, h := range a.AllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			v.errf(fmt.Sprintf("admin.allowed_hosts[%d]", i), "%v", err)
		}
	}
	for i, l := range v.c.Listeners {
		if l.Address == a.Address {
			v.errf("admin.address", "address %s conflicts with listeners[%d]", a.Address, i)
		}
	}
}

func (v *validator) accessLog() {
	a := &v.c.AccessLog
	v.accessLogFormat(a)
	known := observe.AccessLogFields()
	seen := map[string]bool{}
	for i, f := range a.Fields {
		p := fmt.Sprintf("access_log.fields[%d]", i)
		switch {
		case !slices.Contains(known, f):
			v.errf(p, "unknown field %q (want one of %s)", f, strings.Join(known, ", "))
		case seen[f]:
			v.errf(p, "field %q listed twice", f)
		}
		seen[f] = true
	}
	switch a.Output {
	case "stdout", "stderr", "off":
	default:
		dir := a.Output[:max(lastIndexByte(a.Output, '/'), 0)]
		if dir == "" {
			dir = "."
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			v.errf("access_log.output", "directory of %s does not exist", a.Output)
		}
	}
}

func (v *validator) log() {
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.errf("log.level", "unknown level %q (want debug, info, warn or error)", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.errf("log.format", "unknown format %q (want text or json)", v.c.Log.Format)
	}
}

// splitAddr parses host:port; the host may be empty (all interfaces), an IP or a name.
func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("invalid address %q: want host:port", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("invalid port in address %q", addr)
	}
	if strings.ContainsAny(host, " /") {
		return "", 0, fmt.Errorf("invalid host in address %q", addr)
	}
	return host, n, nil
}

func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// isLoopbackHost reports whether a listen host names only loopback interfaces: "localhost"
// or a loopback IP. An empty or unspecified host (all interfaces) and other names are not.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// checkAllowedHost accepts a host name, an IP literal ("[::1]" for IPv6) and either with
// ":port".
func checkAllowedHost(h string) error {
	if strings.ContainsAny(h, "/@ ") {
		return fmt.Errorf("invalid host %q: want a name like admin.example.com, optionally with :port", h)
	}
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("invalid port in %q", h)
		}
		host = hp
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		host = h[1 : len(h)-1]
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if host == "" || strings.Trim(host, ".") == "" {
		return fmt.Errorf("invalid host %q: want a name like admin.example.com, optionally with :port", h)
	}
	for _, c := range []byte(strings.ToLower(host)) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("invalid host %q: want a name like admin.example.com, optionally with :port", h)
		}
	}
	return nil
}

// checkHostPattern accepts "example.com" and "*.example.com".
func checkHostPattern(h string) error {
	rest := strings.TrimPrefix(h, "*.")
	if rest == "" || strings.Contains(rest, "*") {
		return fmt.Errorf("invalid host %q (a wildcard is allowed only as the first label: *.example.com)", h)
	}
	for _, c := range []byte(rest) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']') {
			return fmt.Errorf("invalid host %q", h)
		}
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token (a valid field name or method).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// RedirectVars are the placeholders a redirect target may use.
var RedirectVars = []string{"scheme", "host", "path", "query", "uri"}

// checkTemplate validates the {placeholders} of a redirect target.
func checkTemplate(s string) error {
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return fmt.Errorf("unclosed { in %q", s)
		}
		name := s[i+1 : i+j]
		if !slices.Contains(RedirectVars, name) {
			return fmt.Errorf("unknown placeholder {%s} (want one of {%s})", name, strings.Join(RedirectVars, "}, {"))
		}
		s = s[i+j+1:]
	}
}
