package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
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
	// Cache keeps allowing answers this long; zero means no cache. An answer is reused only
	// for the same question: every field sent, the client's address included.
	Cache time.Duration
	// KeyIgnore are fields sent to the service but left out of the cache key: values new on
	// every request that no service decides on, such as the request ID (the router passes
	// request_id's field). Without it such a field would make every question new.
	KeyIgnore []string
	// Client asks the service. Nil means DefaultClient.
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
	copyKeys  []string // CopyHeaders as proxy.FieldKey
	ignore    []string // KeyIgnore as proxy.FieldKey
}

type forwardEntry struct {
	header  []message.Field // the CopyHeaders of the answer
	expires time.Time
}

// NewForward builds a Forward checker.
func NewForward(c ForwardConfig) *Forward {
	if c.Client == nil {
		c.Client = DefaultClient
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
		copyKeys:  fieldKeys(c.CopyHeaders),
		ignore:    fieldKeys(c.KeyIgnore),
	}
}

// fieldKeys returns names as proxy.FieldKey.
func fieldKeys(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = proxy.FieldKey(n)
	}
	return out
}

// relayed are the fields of a refusal passed to the client.
var relayed = []string{"WWW-Authenticate", "Content-Type", "Location", "Set-Cookie", "Cache-Control"}

// maxDrain is how much of an allowing answer's body is read (and dropped) so that the
// connection to the service can be used again; a longer body closes it.
const maxDrain = 4 << 10

var questionPool = sync.Pool{New: func() any { return new(message.Header) }}

// Check implements Checker. The service is told the raw request path; CheckPath tells it the
// normalized one.
func (f *Forward) Check(ctx context.Context, req *message.Request, client netip.Addr) (string, *Denial) {
	return f.CheckPath(ctx, req, client, "")
}

// CheckPath is Check telling the service path (the normalized path route matching saw, as
// the router passes it) in X-Forwarded-Uri and X-Original-URI, with the request's query;
// "" means the path as the client sent it.
func (f *Forward) CheckPath(ctx context.Context, req *message.Request, client netip.Addr, path string) (string, *Denial) {
	h := &req.Header
	for _, k := range f.copyKeys {
		proxy.DelSpellings(h, k) // the client's own, in any spelling: only the service's go upstream
	}
	q := questionPool.Get().(*message.Header)
	defer func() { q.Reset(); questionPool.Put(q) }()
	f.question(q, req, client, path)
	var key [32]byte
	if f.cacheOpen {
		key = f.cacheKey(q)
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
	resp, err := f.ask(ctx, q)
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
		// A short body read to its end lets the client keep the connection for the next
		// question; Close without it would discard the connection.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
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

// question writes into q the fields sent to the service: the request's fields as an
// upstream request from an untrusted peer carries them (without hop-by-hop fields, fields
// named by Connection, the body's framing and the client's forwarding fields in any
// spelling), then the X-Forwarded-* and X-Original-* fields describing the request and
// X-Real-IP. The forwarding fields always come from Verge: the client is the address the
// router resolved (with trusted_proxies, the one the trusted proxies named).
func (f *Forward) question(q *message.Header, d *message.Request, client netip.Addr, path string) {
	q.CopyFrom(&d.Header)
	proxy.StripUntrusted(q)
	q.DeleteFunc(func(fl *message.Field) bool {
		return message.EqualFold(fl.Name, "Content-Length") || message.EqualFold(fl.Name, "Transfer-Encoding") ||
			proxy.SameSpelling(fl.Name, "x-original-uri") || proxy.SameSpelling(fl.Name, "x-original-method") ||
			proxy.SameSpelling(fl.Name, "x-forwarded-method") || proxy.SameSpelling(fl.Name, "x-forwarded-uri")
	})
	scheme := d.Scheme
	if scheme == "" {
		scheme = "http"
	}
	uri := d.Target
	if path != "" {
		uri = path
		if _, query, ok := strings.Cut(d.Target, "?"); ok {
			uri = path + "?" + query
		}
	}
	q.Add("X-Forwarded-Method", d.Method)
	q.Add("X-Forwarded-Proto", scheme)
	q.Add("X-Forwarded-Host", d.Authority)
	q.Add("X-Forwarded-Uri", uri)
	q.Add("X-Original-URI", uri)
	q.Add("X-Original-Method", d.Method)
	if client.IsValid() {
		a := client.Unmap().String()
		q.Add("X-Forwarded-For", a)
		q.Add("X-Real-IP", a)
	}
}

// ask sends the question q to the service.
func (f *Forward) ask(ctx context.Context, q *message.Header) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, "GET", f.cfg.URL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, fl := range q.Fields() {
		req.Header.Add(fl.Name, fl.Value)
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

// cacheKey hashes the question as it is sent: every field but KeyIgnore's, in order, so
// that two requests share an answer only when the service sees the same question (the
// client's address included: a service may allow by address).
func (f *Forward) cacheKey(q *message.Header) (k [32]byte) {
	h := sha256.New()
	var n [4]byte
	for _, fl := range q.Fields() {
		if f.ignored(fl.Name) {
			continue
		}
		for _, s := range [2]string{fl.Name, fl.Value} {
			binary.BigEndian.PutUint32(n[:], uint32(len(s)))
			h.Write(n[:])
			io.WriteString(h, s)
		}
	}
	h.Sum(k[:0])
	return k
}

func (f *Forward) ignored(name string) bool {
	for _, k := range f.ignore {
		if proxy.SameSpelling(name, k) {
			return true
		}
	}
	return false
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
