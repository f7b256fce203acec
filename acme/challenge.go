package acme

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/certmagic"
)

// ChallengePrefix is the path prefix of HTTP-01 challenge requests (RFC 8555 section 8.3).
const ChallengePrefix = "/.well-known/acme-challenge/"

// IsChallenge reports whether a request path is an HTTP-01 challenge's.
func IsChallenge(path string) bool { return strings.HasPrefix(path, ChallengePrefix) }

// ServeHTTPChallenge answers an HTTP-01 challenge request for host (the Host header, with or
// without port) and path, when this process or another sharing its storage is solving one
// for that host and token. It returns the response body and true when it answered; false
// means the request is not a pending challenge and should be served as usual.
func (m *Manager) ServeHTTPChallenge(method, host, path string) ([]byte, bool) {
	if !IsChallenge(path) {
		return nil, false
	}
	m.mu.Lock()
	iss := m.anyIssuerLocked()
	m.mu.Unlock()
	if iss == nil {
		return nil, false
	}
	r := &http.Request{Method: method, Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
	r = r.WithContext(m.ctx)
	var w recorder
	if !iss.HandleHTTPChallenge(&w, r) || w.status != 0 && w.status != http.StatusOK {
		return nil, false
	}
	return w.body.Bytes(), true
}

// anyIssuerLocked returns an issuer that answers HTTP-01: every issuer reads pending
// challenges from the same memory and storage.
func (m *Manager) anyIssuerLocked() *certmagic.ACMEIssuer {
	for _, s := range m.sites {
		if !s.issuer.DisableHTTPChallenge {
			return s.issuer
		}
	}
	return nil
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
