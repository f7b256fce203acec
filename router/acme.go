package router

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/verge-edge/verge/acme"
	"github.com/verge-edge/verge/config"
	"github.com/verge-edge/verge/message"
)

// acmeALPN is the protocol a CA offers when it validates with TLS-ALPN-01 (RFC 8737).
const acmeALPN = "acme-tls/1"

// prepareACME prepares the ACME site of every listener with acme settings; the sites start
// when the generation is built (startACME).
func (in *Instance) prepareACME(cfg *config.Config, m *acme.Manager) (map[string]*acme.Site, error) {
	var httpAddr string
	for i := range cfg.Listeners {
		if cfg.Listeners[i].TLS == nil {
			httpAddr = cfg.Listeners[i].Address
			break
		}
	}
	sites := map[string]*acme.Site{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.TLS == nil || l.TLS.ACME == nil {
			continue
		}
		if m == nil {
			return nil, fmt.Errorf("listener %q: tls.acme needs an ACME manager (router.Deps.ACME)", l.Name)
		}
		s, err := m.Prepare(acme.SiteConfig{
			Listener: l.Name,
			ACME:     *l.TLS.ACME,
			Domains:  cfg.ACMEDomains(l),
			HTTPAddr: httpAddr,
			TLSAddr:  l.Address,
		})
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		sites[l.Name] = s
	}
	return sites, nil
}

// startACME starts the prepared sites; a failure is logged (the listener serves its other
// certificates meanwhile).
func (in *Instance) startACME(d *Deps) {
	if d.ACME == nil {
		return
	}
	names := make([]string, 0, len(in.acmeSites))
	for name, s := range in.acmeSites {
		names = append(names, name)
		if err := s.Start(); err != nil {
			d.Logger.Error("acme: starting certificate management", "listener", name, "err", err)
		}
	}
	d.ACME.Retain(names)
}

// isACMEChallengeHello reports whether hello is a CA's TLS-ALPN-01 validation: it offers
// acme-tls/1 and nothing else (RFC 8737 section 3).
func isACMEChallengeHello(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeALPN
}

// acmeChallengeConfig returns the listener's GetConfigForClient: a hello that is a TLS-ALPN-01
// validation gets a config of its own (the challenge certificate, acme-tls/1 the only
// protocol, no client certificate asked for); any other hello gets nil, the listener's config,
// which does not offer acme-tls/1, so an HTTP connection can never negotiate it.
func acmeChallengeConfig(site *acme.Site, minVersion uint16) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	challenge := &tls.Config{
		MinVersion:             max(minVersion, tls.VersionTLS12), // RFC 8737 section 4
		NextProtos:             []string{acmeALPN},
		GetCertificate:         site.GetCertificate,
		SessionTicketsDisabled: true,
	}
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if isACMEChallengeHello(hello) {
			return challenge, nil
		}
		return nil, nil
	}
}

// acmeGetCertificate chooses a certificate for a listener with acme settings: a configured
// certificate naming the server name exactly or by wildcard, then the managed certificate,
// then the first configured certificate. A server name nothing covers fails the handshake
// (without configured certificates): no certificate is ever ordered for a name not
// configured. TLS-ALPN-01 validations don't come here (acmeChallengeConfig).
func acmeGetCertificate(site *acme.Site, cs *certSet) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(cs.all) > 0 {
			if c := cs.lookup(hello); c != nil {
				return c, nil
			}
		}
		c, err := site.GetCertificate(hello)
		if err == nil || len(cs.all) == 0 {
			return c, err
		}
		return cs.get(hello)
	}
}

// plainEdge answers on a plain-HTTP listener what precedes routing: ACME HTTP-01 challenges
// and, with redirect_https, the redirect of everything else to https.
type plainEdge struct {
	acme          *acme.Manager // nil: no challenges answered
	redirectHTTPS bool
	httpsPort     string // "" or "443": no port in the redirect
	// hosts are the names redirect_https sends clients to: the ACME domains and the routes'
	// exact hosts (lower case, no trailing dot); wildcards the routes' "*.suffix" hosts,
	// stored as ".suffix". Any other Host gets 421, so the redirect can't point elsewhere.
	hosts     map[string]bool
	wildcards []string
}

// newPlainEdge returns the edge of plain listener l, nil when it has nothing to do.
func newPlainEdge(cfg *config.Config, l *config.Listener, m *acme.Manager) *plainEdge {
	if l.TLS != nil {
		return nil
	}
	e := &plainEdge{redirectHTTPS: l.RedirectHTTPS, httpsPort: cfg.HTTPSPort()}
	for i := range cfg.Listeners {
		if t := cfg.Listeners[i].TLS; t != nil && t.ACME != nil {
			e.acme = m
		}
	}
	if e.acme == nil && !e.redirectHTTPS {
		return nil
	}
	if e.redirectHTTPS {
		e.hosts, e.wildcards = redirectHosts(cfg)
	}
	return e
}

// redirectHosts collects the names redirect_https may send clients to.
func redirectHosts(cfg *config.Config) (map[string]bool, []string) {
	hosts := map[string]bool{}
	var wildcards []string
	add := func(h string) {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		switch {
		case h == "":
		case strings.HasPrefix(h, "*."):
			if !slices.Contains(wildcards, h[1:]) {
				wildcards = append(wildcards, h[1:])
			}
		default:
			hosts[h] = true
		}
	}
	for i := range cfg.Listeners {
		for _, h := range cfg.ACMEDomains(&cfg.Listeners[i]) {
			add(h)
		}
	}
	for i := range cfg.Routes {
		for _, h := range cfg.Routes[i].Match.Host {
			add(h)
		}
	}
	return hosts, wildcards
}

// redirectable reports whether host (without port) is a configured name.
func (e *plainEdge) redirectable(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if e.hosts[host] {
		return true
	}
	lower := strings.ToLower(host)
	if e.hosts[lower] {
		return true
	}
	if !isHostname(lower) { // "a@evil.example#.example.com" must not match "*.example.com"
		return false
	}
	for _, w := range e.wildcards {
		// "*.example.com" matches one or more labels before ".example.com", not the apex.
		if len(lower) > len(w) && strings.HasSuffix(lower, w) {
			return true
		}
	}
	return false
}

// isHostname reports whether h holds only the bytes of a DNS name.
func isHostname(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// serve answers ex when it is a challenge or to be redirected, and reports whether it did.
func (e *plainEdge) serve(ex message.ServerExchange) bool {
	req := ex.Request()
	path, _, _ := strings.Cut(req.Target, "?")
	if e.acme != nil && acme.IsChallenge(path) {
		if body, ok := e.acme.ServeHTTPChallenge(req.Method, req.Authority, path); ok {
			writeSimple(ex, 200, "application/octet-stream", "", body)
			return true
		}
		if !e.redirectHTTPS {
			return false
		}
		// An unknown token on a redirecting listener: no https answer can help the CA.
		writeSimple(ex, 404, "text/plain; charset=utf-8", "", []byte("404 Not Found: no pending ACME challenge\n"))
		return true
	}
	if !e.redirectHTTPS {
		return false
	}
	host := req.Authority
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || !strings.HasPrefix(req.Target, "/") {
		writeSimple(ex, 400, "text/plain; charset=utf-8", "", []byte("400 Bad Request: no host to redirect to\n"))
		return true
	}
	if !e.redirectable(host) {
		// Misdirected: redirecting to a name nobody configured would make this listener an
		// open redirect (and a cache-poisoning tool).
		writeSimple(ex, 421, "text/plain; charset=utf-8", "", []byte("421 Misdirected Request: unknown host\n"))
		return true
	}
	host = strings.TrimSuffix(host, ".")
	if strings.Contains(host, ":") { // an IPv6 literal
		host = "[" + host + "]"
	}
	loc := "https://" + host
	if e.httpsPort != "" && e.httpsPort != "443" {
		loc += ":" + e.httpsPort
	}
	writeSimple(ex, 308, "text/plain; charset=utf-8", loc+req.Target, nil)
	return true
}

// writeSimple sends a complete small response.
func writeSimple(ex message.ServerExchange, status int, ctype, location string, body []byte) {
	resp := message.Response{Status: status, Proto: ex.Request().Proto, ContentLength: int64(len(body))}
	resp.Header.Add("Content-Type", ctype)
	if location != "" {
		resp.Header.Add("Location", location)
	}
	if ex.WriteHeader(&resp) != nil {
		return
	}
	if len(body) > 0 && ex.Request().Method != "HEAD" {
		ex.Write(body)
	}
	ex.Finish(nil)
}
