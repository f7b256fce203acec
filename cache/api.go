package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/verge-edge/verge/message"
)

// The Cache API: workers' own entries (Cloudflare's caches.default and caches.open(name)),
// kept in the same tiers as the proxy's but under keys of their own namespace, so that a
// worker reaches only what it stored. docs/caching.md, "The Cache API".

// MaxNamespace bounds the length of a Cache API namespace.
const MaxNamespace = 512

// Errors of Put. A *NotStoredError says why an acceptable request was not stored.
var (
	ErrPutMethod  = errors.New("cache: put needs a GET request")
	ErrPutPartial = errors.New("cache: put refuses a 206 Partial Content response")
	ErrPutVary    = errors.New("cache: put refuses a response with Vary: *")
	errNamespace  = errors.New("cache: invalid namespace")
)

// NotStoredError is returned by Put for a response a shared cache must not store (RFC 9111
// section 3): Reason is the Cache-Status detail ("no-store", "private", "set-cookie",
// "no-freshness", "too-large", "status", ...).
type NotStoredError struct{ Reason string }

func (e *NotStoredError) Error() string { return "cache: response not stored: " + e.Reason }

// NotStoredReason returns Reason (the worker host reads it through this method).
func (e *NotStoredError) NotStoredReason() string { return e.Reason }

// apiKey is the key of req in namespace ns: "GET", then a part starting with \x01 (a
// proxy key holds the scheme there, so the two never collide), then the URL's parts.
func apiKey(ns string, req *message.Request) ([]byte, error) {
	if ns == "" || len(ns) > MaxNamespace || strings.IndexByte(ns, 0) >= 0 {
		return nil, errNamespace
	}
	r := *req
	r.Method = "GET"
	k := appendKey(nil, &r, defaultPolicy)
	out := make([]byte, 0, len(k)+len(ns)+2)
	out = append(out, "GET\x00\x01"...)
	out = append(out, ns...)
	out = append(out, 0)
	return append(out, k[len("GET\x00"):]...), nil
}

// Match returns the fresh response stored in namespace ns for req (GET or HEAD), answering
// req's conditional fields (a 304) and a single Range (206 or 416) as the proxy's hits do.
// A stale response is not returned. The body, when any, must be closed; it stops when ctx
// ends. The cache's metrics (Metrics.CacheResult) count the proxy's requests only: callers
// count their own.
func (c *Cache) Match(ctx context.Context, ns string, req *message.Request) (*message.Response, bool) {
	if req.Method != "GET" && req.Method != "HEAD" {
		return nil, false
	}
	key, err := apiKey(ns, req)
	if err != nil {
		return nil, false
	}
	primary := hashKey(key)
	names, _ := c.idx.varyOf(primary)
	vary := appendVary(nil, req, names)
	hash := variantHash(primary, vary)
	o := c.get(hash, key)
	if o == nil || o.m.VaryKey != string(vary) || o.m.Status == 206 {
		return nil, false
	}
	var rc directives
	parseDirectives(&message.Header{}, &rc)
	u, ttl := evaluate(o.m, &rc, c.now().UnixNano())
	if u != useFresh {
		return nil, false
	}
	t := &tx{c: c, pol: defaultPolicy, now: c.now()}
	return t.serveFor(ctx, req, o, "hit", ttl), true
}

// Put stores resp with body as the answer to req in namespace ns, following RFC 9111 for a
// shared cache: Cache-Control (s-maxage, max-age, no-store, private, no-cache), Expires,
// ETag and Last-Modified, and Vary (keyed by req's values of the named fields). A response
// with Set-Cookie is not stored unless Cache-Control names it in private="Set-Cookie", in
// which case it is stored without that field. resp.Body is ignored.
func (c *Cache) Put(ns string, req *message.Request, resp *message.Response, body []byte) error {
	switch {
	case req.Method != "GET":
		return ErrPutMethod
	case resp.Status == 206:
		return ErrPutPartial
	case resp.Header.HasToken("Vary", "*"):
		return ErrPutVary
	}
	key, err := apiKey(ns, req)
	if err != nil {
		return err
	}
	r := *resp
	r.Header = resp.Header.Clone()
	r.Body = nil
	r.ContentLength = int64(len(body))
	if r.Header.Has("Set-Cookie") {
		if !privateNames(&r.Header, "set-cookie") {
			return &NotStoredError{Reason: "set-cookie"}
		}
		r.Header.Del("Set-Cookie")
	}
	stripQualifiedPrivate(&r.Header)
	var cc, reqCC directives
	responseDirectives(&r.Header, &cc, defaultPolicy)
	parseDirectives(&req.Header, &reqCC)
	if reason := storable(req, &reqCC, &r, &cc, defaultPolicy); reason != "" {
		return &NotStoredError{Reason: reason}
	}
	if int64(len(body)) > defaultPolicy.maxObjectSize() {
		return &NotStoredError{Reason: "too-large"}
	}
	now := c.now()
	primary := hashKey(key)
	names := varyNames(&r.Header)
	varyKey := appendVary(nil, req, names)
	hash := variantHash(primary, varyKey)
	url := string(appendURL(nil, req))
	if len(body) > 0 {
		r.Body = emptyBody{} // buildMeta counts a nil body as empty
	}
	m := buildMeta(key, url, primary, hash, &r, r.Header.Clone(), &cc, defaultPolicy, now, now, names, varyKey)
	if m.Lifetime <= 0 && m.ETag == "" && m.LastModified == "" {
		return &NotStoredError{Reason: "no-freshness"}
	}
	data := append([]byte(nil), body...)
	o := newObject(m, completeBody(data))
	if c.disk != nil {
		if dw, err := c.disk.create(m); err != nil {
			c.log.Warn("cache: disk tier", "err", err)
		} else {
			dw.write(data)
			if err := dw.commit(); err != nil {
				c.log.Warn("cache: disk tier", "err", err)
			}
		}
	}
	c.insert(o)
	c.metrics.CacheBytes("stored", int64(len(data)))
	return nil
}

// Delete removes every stored variant of req's URL in namespace ns and reports whether
// there was one.
func (c *Cache) Delete(ns string, req *message.Request) bool {
	key, err := apiKey(ns, req)
	if err != nil {
		return false
	}
	hashes := c.idx.variantsOf(hashKey(key))
	for _, h := range hashes {
		c.removeHash(h)
	}
	return len(hashes) > 0
}

// PurgeNamespace removes every entry of namespace ns (a worker removed, or an operator's
// purge of one worker's cache) and counts them.
func (c *Cache) PurgeNamespace(ns string) Purged {
	return c.purge(func(e *entry) bool { return e.ns == ns })
}

// apiNamespace returns the namespace of a Cache API key, "" for a proxy key.
func apiNamespace(key string) string {
	const p = "GET\x00\x01"
	if !strings.HasPrefix(key, p) {
		return ""
	}
	rest := key[len(p):]
	if i := strings.IndexByte(rest, 0); i >= 0 {
		return rest[:i]
	}
	return ""
}

type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, fmt.Errorf("cache: no body") }
func (emptyBody) Close() error             { return nil }

// privateNames reports whether Cache-Control holds private="..." naming field (lowercase).
func privateNames(h *message.Header, field string) bool {
	found := false
	h.Values("Cache-Control", func(v string) bool {
		for v != "" {
			var part string
			part, v = splitDirective(v)
			name, val, hasVal := cutDirective(part)
			if !hasVal || !message.EqualFold(name, "private") {
				continue
			}
			for _, f := range strings.Split(strings.Trim(val, "\""), ",") {
				if strings.EqualFold(strings.TrimSpace(f), field) {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// stripQualifiedPrivate removes private="..." (a field list) from Cache-Control once the
// fields it names are gone: what remains may be stored by a shared cache (RFC 9111 section
// 5.2.2.7).
func stripQualifiedPrivate(h *message.Header) {
	vals := []string{}
	changed := false
	h.Values("Cache-Control", func(v string) bool {
		var kept []string
		for v != "" {
			var part string
			part, v = splitDirective(v)
			name, _, hasVal := cutDirective(part)
			if hasVal && message.EqualFold(name, "private") {
				changed = true
				continue
			}
			if p := strings.TrimSpace(part); p != "" {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			vals = append(vals, strings.Join(kept, ", "))
		}
		return true
	})
	if !changed {
		return
	}
	h.Del("Cache-Control")
	for _, v := range vals {
		h.Add("Cache-Control", v)
	}
}
