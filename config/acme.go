package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ACME settings (docs/acme.md).
const (
	// LetsEncryptCA is the ACME directory used when acme.ca is empty.
	LetsEncryptCA = "https://acme-v02.api.letsencrypt.org/directory"
	// DefaultRenewInterval is how often managed certificates are checked for renewal.
	DefaultRenewInterval = 10 * time.Minute
	// MinRenewInterval is the smallest renew_interval accepted.
	MinRenewInterval = time.Second
)

// ACME makes a TLS listener obtain and renew its certificates from an ACME CA (Let's Encrypt
// by default) with the HTTP-01 and TLS-ALPN-01 challenges. Certificates, keys and the ACME
// account are kept under WorkerData/acme (or, in a cluster, in the cluster's key-value
// store), so a restart reuses them.
type ACME struct {
	// Email is the ACME account's contact address; the CA writes to it about expiring
	// certificates and policy changes. Empty means an account without contact.
	Email string `yaml:"email"`
	// CA is the URL of the ACME directory. Empty means Let's Encrypt's production CA
	// (LetsEncryptCA); use its staging CA while testing a setup, it has far higher limits.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of the root certificates to trust for the CA's own HTTPS
	// endpoint (a private CA such as step-ca or Pebble). Empty means the system's roots.
	CARoot string `yaml:"ca_root"`
	// Domains are the names to obtain certificates for. Empty means every exact host name
	// (no wildcard) of the routes this listener serves (match.host).
	Domains []string `yaml:"domains"`
	// Profile asks the CA for a certificate profile (for example Let's Encrypt's
	// "shortlived"). Empty means the CA's default.
	Profile string `yaml:"profile"`
	// RenewalWindowRatio is the fraction of a certificate's lifetime, counted back from its
	// expiry, in which it is renewed. Zero means 1/3 (a 90-day certificate is renewed 30 days
	// before it expires). Between 0 and 1. The CA's renewal information (ARI), when offered,
	// may renew earlier.
	RenewalWindowRatio float64 `yaml:"renewal_window_ratio"`
	// RenewInterval is how often certificates are checked for renewal and their OCSP
	// staples refreshed. Zero means 10m. At least 1s.
	RenewInterval Duration `yaml:"renew_interval"`
	// DisableHTTPChallenge turns HTTP-01 off (it is answered on the plain-HTTP listeners and
	// needs one). Default false.
	DisableHTTPChallenge bool `yaml:"disable_http_challenge"`
	// DisableTLSALPNChallenge turns TLS-ALPN-01 off (answered in this listener's handshakes).
	// Default false.
	DisableTLSALPNChallenge bool `yaml:"disable_tls_alpn_challenge"`
}

func (a *ACME) setDefaults() {
	if a.CA == "" {
		a.CA = LetsEncryptCA
	}
	a.RenewInterval = orDuration(a.RenewInterval, DefaultRenewInterval)
	for i, d := range a.Domains {
		a.Domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
}

// ACMEDomains returns the names the listener's certificates are obtained for: acme.domains,
// or else the exact host names of the routes that the listener serves, in config order
// without duplicates. Nil when the listener has no acme settings.
func (c *Config) ACMEDomains(l *Listener) []string {
	if l.TLS == nil || l.TLS.ACME == nil {
		return nil
	}
	if len(l.TLS.ACME.Domains) > 0 {
		return l.TLS.ACME.Domains
	}
	var names []string
	for i := range c.Routes {
		r := &c.Routes[i]
		if len(r.Listeners) > 0 && !slices.Contains(r.Listeners, l.Name) {
			continue
		}
		for _, h := range r.Match.Host {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if h == "" || strings.Contains(h, "*") || slices.Contains(names, h) {
				continue
			}
			names = append(names, h)
		}
	}
	return names
}

// validateACME checks the acme settings of listener i (p is its path).
func (v *validator) validateACME(p string, l *Listener) {
	a := l.TLS.ACME
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errf(p+".ca", "ca must be an https:// URL of an ACME directory, got %q", a.CA)
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		v.errf(p+".email", "%q is not an email address", a.Email)
	}
	if a.CARoot != "" {
		if _, err := LoadCAPool(a.CARoot); err != nil {
			v.errf(p+".ca_root", "%v", err)
		}
	}
	if a.RenewalWindowRatio < 0 || a.RenewalWindowRatio >= 1 {
		v.errf(p+".renewal_window_ratio", "must be between 0 and 1, got %v", a.RenewalWindowRatio)
	}
	if a.RenewInterval.Std() < MinRenewInterval {
		v.errf(p+".renew_interval", "must be at least %v", MinRenewInterval)
	}
	if a.DisableHTTPChallenge && a.DisableTLSALPNChallenge {
		v.errf(p, "both challenges are disabled: keep http or tls-alpn (DNS-01 is set in the Go API)")
	} else if a.DisableTLSALPNChallenge && !v.c.hasPlainListener() {
		v.errf(p+".disable_tls_alpn_challenge", "HTTP-01 is then the only challenge, and it needs a plain-HTTP listener (port 80)")
	}
	for i, d := range a.Domains {
		if d == "" || strings.ContainsAny(d, " /:@") {
			v.errf(fmt.Sprintf("%s.domains[%d]", p, i), "%q is not a host name", d)
		}
	}
	if len(v.c.ACMEDomains(l)) == 0 {
		v.errf(p+".domains", "no host names to obtain certificates for: set acme.domains, or give the routes of listener %q a match.host", l.Name)
	}
}

// validateRedirectHTTPS checks redirect_https: plain listeners only, and a TLS listener to
// send clients to.
func (v *validator) validateRedirectHTTPS(p string, l *Listener) {
	if !l.RedirectHTTPS {
		return
	}
	if l.TLS != nil {
		v.errf(p+".redirect_https", "redirect_https is for plain-HTTP listeners; this one serves TLS")
		return
	}
	if v.c.HTTPSPort() == "" {
		v.errf(p+".redirect_https", "no TLS listener to redirect to")
	}
}

// HTTPSPort is the port that redirect_https sends clients to: the first TLS listener's. Empty
// when there is no TLS listener.
func (c *Config) HTTPSPort() string {
	for i := range c.Listeners {
		if c.Listeners[i].TLS != nil {
			if _, port, err := net.SplitHostPort(c.Listeners[i].Address); err == nil {
				return port
			}
		}
	}
	return ""
}

func (c *Config) hasPlainListener() bool {
	for i := range c.Listeners {
		if c.Listeners[i].TLS == nil {
			return true
		}
	}
	return false
}
