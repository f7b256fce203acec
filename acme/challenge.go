package acme

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ChallengePrefix is the path prefix of HTTP-01 challenge requests (RFC 8555 section 8.3).
const ChallengePrefix = "/.well-known/acme-challenge/"

// IsChallenge reports whether a request path is an HTTP-01 challenge's.
func IsChallenge(path string) bool { return strings.HasPrefix(path, ChallengePrefix) }

// challengeLookup bounds the storage lookup of one challenge request (the cluster's KV
// storage may be electing a leader): the CA retries a validation that got no answer.
const challengeLookup = 2 * time.Second

// ServeHTTPChallenge answers an HTTP-01 challenge request for host (the Host header, with or
// without port) and path, when this process or another sharing its storage is solving one
// for that host and token. It returns the response body and true when it answered; false
// means the request is not a pending challenge and should be served as usual.
//
// Only a host that a site manages and a token of the form the CA issues (base64url, at least
// 128 bits) are looked up; anything else is refused without touching storage, so random
// requests under the challenge path cost nothing. The lookup asks the issuer of the site that
// manages the host (challenges are stored under their CA's prefix), and is bounded by
// challengeLookup.
func (m *Manager) ServeHTTPChallenge(method, host, path string) ([]byte, bool) {
	if !IsChallenge(path) || !plausibleToken(path[len(ChallengePrefix):]) {
		return nil, false
	}
	name := normalizeHost(host)
	m.mu.Lock()
	issuers := m.issuersForLocked(name)
	m.mu.Unlock()
	for _, iss := range issuers {
		ctx, cancel := context.WithTimeout(m.ctx, challengeLookup)
		r := &http.Request{Method: method, Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
		r = r.WithContext(ctx)
		var w recorder
		ok := iss.HandleHTTPChallenge(&w, r) && (w.status == 0 || w.status == http.StatusOK)
		cancel()
		if ok {
			return w.body.Bytes(), true
		}
	}
	return nil, false
}

// plausibleToken reports whether tok can be an ACME challenge token: base64url without
// padding (RFC 8555 section 8.1), 22 (128 bits) to 128 characters.
func plausibleToken(tok string) bool {
	if len(tok) < 22 || len(tok) > 128 {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// normalizeHost returns host without port and trailing dot, in lower case.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// issuersForLocked returns the HTTP-01 issuers of the started sites that manage name, each
// once: the one whose CA a challenge for name was ordered from is among them.
func (m *Manager) issuersForLocked(name string) []*certmagic.ACMEIssuer {
	var out []*certmagic.ACMEIssuer
	for _, s := range m.sites {
		if s.issuer.DisableHTTPChallenge || slices.Contains(out, s.issuer) {
			continue
		}
		for _, d := range s.domains {
			if strings.EqualFold(strings.TrimSuffix(d, "."), name) {
				out = append(out, s.issuer)
				break
			}
		}
	}
	return out
}

// recorder is the http.ResponseWriter certmagic writes a challenge response to.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.body.Len()+len(p) > 4096 { // a key authorization is about 90 bytes
		return 0, http.ErrContentLength
	}
	return w.body.Write(p)
}
