package config

import (
	"slices"
	"strings"
	"testing"
)

func TestACMEDomainsAndDefaults(t *testing.T) {
	c, err := Parse("acme.yaml", []byte(`listeners:
  - name: http
    address: 127.0.0.1:8080
    redirect_https: true
  - name: https
    address: 127.0.0.1:8443
    tls:
      acme: {email: ops@example.com}
  - name: other
    address: 127.0.0.1:9443
    tls:
      acme: {domains: [Explicit.Example.]}
routes:
  - match: {host: [a.example, "*.wild.example", A.example]}
    respond: {body: x}
  - listeners: [http]
    match: {host: only-http.example}
    respond: {body: x}
  - listeners: [https]
    match: {host: b.example}
    respond: {body: x}
`))
	if err != nil {
		t.Fatal(err)
	}
	https, other := &c.Listeners[1], &c.Listeners[2]
	if got, want := c.ACMEDomains(https), []string{"a.example", "b.example"}; !slices.Equal(got, want) {
		t.Errorf("derived domains %v, want %v (exact hosts of the listener's routes, no wildcard, no duplicate)", got, want)
	}
	if got, want := c.ACMEDomains(other), []string{"explicit.example"}; !slices.Equal(got, want) {
		t.Errorf("explicit domains %v, want %v", got, want)
	}
	if c.ACMEDomains(&c.Listeners[0]) != nil {
		t.Error("a plain listener has ACME domains")
	}
	a := https.TLS.ACME
	if a.CA != LetsEncryptCA || a.RenewInterval.Std() != DefaultRenewInterval {
		t.Errorf("defaults: ca %q, renew_interval %v", a.CA, a.RenewInterval)
	}
	if c.HTTPSPort() != "8443" {
		t.Errorf("redirect port %q, want the first TLS listener's", c.HTTPSPort())
	}
}

func TestACMEErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      acme: {ca: \"http://x/dir\", domains: [a.example]}\nroutes:\n  - respond: {body: x}\n",
			"4:18: listeners[0].tls.acme.ca: ca must be an https:// URL"},
		{"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      acme: {email: nobody}\nroutes:\n  - respond: {body: x}\n",
			"listeners[0].tls.acme.domains: no host names"},
		{"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      acme: {email: nobody, domains: [a.example]}\nroutes:\n  - respond: {body: x}\n",
			"listeners[0].tls.acme.email: \"nobody\" is not an email address"},
		{"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      acme: {domains: [a.example], disable_tls_alpn_challenge: true}\nroutes:\n  - respond: {body: x}\n",
			"disable_tls_alpn_challenge: HTTP-01 is then the only challenge, and it needs a plain-HTTP listener"},
		{"listeners:\n  - address: 127.0.0.1:8443\n    tls:\n      acme: {domains: [a.example], renew_interval: 10ms, renewal_window_ratio: 1}\nroutes:\n  - respond: {body: x}\n",
			"renew_interval: must be at least 1s"},
		{"listeners:\n  - address: 127.0.0.1:8080\n    redirect_https: true\nroutes:\n  - respond: {body: x}\n",
			"3:21: listeners[0].redirect_https: no TLS listener to redirect to"},
	} {
		_, err := Parse("v.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v\nwant it to contain %q", err, tc.want)
		}
	}
}
