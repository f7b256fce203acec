package auth

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/verge-edge/verge/message"
)

// Bounds of forward authentication.
const (
	// ForwardCacheSize is how many allowed answers a Forward keeps when caching.
	ForwardCacheSize = 4096
	// maxForwardBody bounds the body of a refusal relayed to the client.
	maxForwardBody = 64 << 10
)

// ForwardConfig configures NewForward.
type ForwardConfig struct {
	// URL is the authentication service.
	URL string
	// Timeout bounds one question.
	Timeout time.Duration
	// CopyHeaders are fields of an allowing answer copied to the upstream request.
	CopyHeaders []string
	// Cache keeps allowing answers this long; zero means no cache.
	Cache time.Duration
	// Client asks the service. Nil means a client of its own that follows no redirects.
	Client *http.Client
	// Logger receives failures of the service. Nil means slog.Default().
	Logger *slog.Logger
}

// Forward asks an authentication service about each request, like NGINX auth_request: a 2xx
// answer lets the request pass (with CopyHeaders copied upstream), a 401 or 403 is relayed
// to the client, anything else is a 500 and no answer in time a 503.
type Forward struct {
	cfg       ForwardConfig
	failed    *Denial
	timedOut  *Denial
	mu        sync.Mutex
	cache     map[[32]byte]forwardEntry
	cacheOpen bool
}

type forwardEntry struct {
	header  []message.Field // the CopyHeaders of the answer
	expires time.Time
}

// NewForward builds a Forward checker.
func NewForward(c ForwardConfig) *Forward {
	if c.Client == nil {
		c.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &Forward{
		cfg:       c,
		failed:    plain(500, "500 Internal Server Error: the authentication service gave an unexpected answer\n"),
		timedOut:  plain(503, "503 Service Unavailable: the authentication service did not answer\n", "Retry-After", "5"),
		cache:     map[[32]byte]forwardEntry{},
		cacheOpen: c.Cache > 0,
	}
}

// relayed are the fields of a refusal passed to the client.
var relayed = []string{"WWW-Authenticate", "Content-Type", "Location", "Set-Cookie", "Cache-Control"}

// Check implements Checker.
func (f *Forward) Check(ctx context.Context, req *message.Request, client netip.Addr) (string, *Denial) {
	h := &req.Header
	for _, n := range f.cfg.CopyHeaders {
		h.Del(n) // the client's own: only the service's go upstream
	}
	var key [32]byte
	if f.cacheOpen {
		key = f.cacheKey(req)
		f.mu.Lock()
		e, ok := f.cache[key]
		f.mu.Unlock()
		if ok && time.Now().Before(e.expires) {
			for _, fl := range e.header {
				h.Add(fl.Name, fl.Value)
			}
			return "", nil
		}
	}
	resp, err := f.ask(ctx, req, client)
	if err != nil {
		f.cfg.Logger.Warn("forward auth: the service did not answer", "url", f.cfg.URL, "err", err)
		return "", f.timedOut // unreachable or too slow: unavailable
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		var copied []message.Field
		for _, n := range f.cfg.CopyHeaders {
			for _, v := range resp.Header.Values(n) {
				h.Add(n, v)
				copied = append(copied, message.Field{Name: n, Value: v})
			}
		}
		if f.cacheOpen {
			f.store(key, copied)
		}
		return "", nil
	case resp.StatusCode == 401 || resp.StatusCode == 403:
		d := &Denial{Status: resp.StatusCode, Header: &message.Header{}}
		for _, n := range relayed {
			for _, v := range resp.Header.Values(n) {
				d.Header.Add(n, v)
			}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody+1))
		if err != nil || len(body) > maxForwardBody {
			body = nil
			d.Header.Del("Content-Type")
		}
		d.Body = body
		return "", d
	}
	f.cfg.Logger.Warn("forward auth: unexpected status from the service", "url", f.cfg.URL, "status", resp.StatusCode)
	return "", f.failed
}

// ask sends the question: the request's fields (without a body) and the X-Forwarded-* and
// X-Original-* fields describing it.
func (f *Forward) ask(ctx context.Context, d *message.Request, client netip.Addr) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, "GET", f.cfg.URL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, fl := range d.Header.Fields() {
		if message.ConnectionSpecific(fl.Name) || message.EqualFold(fl.Name, "Content-Length") ||
			message.EqualFold(fl.Name, "Transfer-Encoding") || message.EqualFold(fl.Name, "Upgrade") {
			continue
		}
		req.Header.Add(fl.Name, fl.Value)
	}
	scheme := d.Scheme
	if scheme == "" {
		scheme = "http"
	}
	req.Header.Set("X-Forwarded-Method", d.Method)
	req.Header.Set("X-Forwarded-Proto", scheme)
	req.Header.Set("X-Forwarded-Host", d.Authority)
	req.Header.Set("X-Forwarded-Uri", d.Target)
	req.Header.Set("X-Original-URI", d.Target)
	req.Header.Set("X-Original-Method", d.Method)
	if client.IsValid() {
		req.Header.Set("X-Forwarded-For", client.Unmap().String())
	}
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

// cacheKey hashes what the service's answer may depend on: the credentials (Authorization,
// Cookie) and the request (method, host, target).
func (f *Forward) cacheKey(r *message.Request) (k [32]byte) {
	h := sha256.New()
	for _, s := range []string{r.Method, r.Authority, r.Target, r.Header.Get("Authorization")} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	r.Header.Values("Cookie", func(v string) bool { h.Write([]byte(v)); h.Write([]byte{0}); return true })
	h.Sum(k[:0])
	return k
}

func (f *Forward) store(k [32]byte, copied []message.Field) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= ForwardCacheSize {
		now := time.Now()
		for old, e := range f.cache {
			if now.After(e.expires) {
				delete(f.cache, old)
			}
		}
		for old := range f.cache {
			if len(f.cache) < ForwardCacheSize {
				break
			}
			delete(f.cache, old)
		}
	}
	f.cache[k] = forwardEntry{header: copied, expires: time.Now().Add(f.cfg.Cache)}
}
