package sdk

import (
	"bytes"
	"errors"
	"io"

	"github.com/verge-edge/verge/internal/workerabi"
)

// HTTPCache is one of the worker's HTTP caches (the Cache API, Cloudflare's caches.default
// and caches.open): responses stored by URL on the host's RFC 9111 cache, in memory or on
// disk as the host configures it. A worker's caches are its own: no other worker, and not
// the proxy's cached routes, can read or delete what it stores. Entries are evicted like
// every cached response, and an operator's purge (by URL, prefix or tag) removes them too.
type HTTPCache struct{ name string }

// Cache returns the worker's default cache.
func Cache() *HTTPCache { return &HTTPCache{name: "default"} }

// OpenCache returns the worker's cache named name (1 to 128 bytes); caches of different
// names hold different entries.
func OpenCache(name string) *HTTPCache { return &HTTPCache{name: name} }

// NotStoredError is the error of Put for a response that a shared cache must not store:
// Reason says why ("no-store", "private", "set-cookie", "no-freshness", "too-large",
// "status", ...).
type NotStoredError struct{ Reason string }

func (e *NotStoredError) Error() string { return "verge sdk: response not stored: " + e.Reason }

// encodeCacheReq encodes the cache name and the request's method, URL and header (the body
// is not part of the key and is not read).
func (c *HTTPCache) encodeReq(e *workerabi.Encoder, r *Request) error {
	if r.RawURL == "" {
		return errors.New("verge sdk: request without URL")
	}
	m := r.Method
	if m == "" {
		m = "GET"
	}
	e.Str(c.name)
	e.Str(m)
	e.Str(r.RawURL)
	e.Str("")
	encodeHeader(e, r.Header)
	e.Bytes(nil)
	return nil
}

// Match returns the fresh response stored for r (a GET or HEAD), and false when there is
// none. Like a cache hit of the proxy, it answers r's conditional fields (If-None-Match,
// If-Modified-Since: a 304) and a single Range (206, or 416), and carries Age and
// Cache-Status. Stale responses are not returned. Close the Body (or read it to the end).
func (c *HTTPCache) Match(r *Request) (*Response, bool) {
	var e workerabi.Encoder
	if c.encodeReq(&e, r) != nil {
		return nil, false
	}
	res, err := rawCall(workerabi.OpCacheMatch, e.B)
	if err != nil || len(res) == 0 || res[0] == 0 {
		return nil, false
	}
	resp, err := decodeStreamResponse(res[1:])
	if err != nil {
		return nil, false
	}
	return resp, true
}

// Put stores resp as the answer to r, a GET request, following RFC 9111 for a shared
// cache: Cache-Control (s-maxage, max-age, no-store, private, no-cache), Expires, ETag and
// Last-Modified, and Vary (Match then compares r's values of the named fields). It reads
// resp.Body whole (at most 32 MiB) and replaces it with a reader of the same bytes, so that
// resp can still be sent. It fails for a request other than GET, a 206 response and
// Vary: *, and with *NotStoredError for what a shared cache must not store: no-store,
// private, a Set-Cookie field (unless Cache-Control names it in private="Set-Cookie": the
// response is then stored without it), or a response without freshness or validators.
func (c *HTTPCache) Put(r *Request, resp *Response) error {
	var body []byte
	if resp.Body != nil {
		var err error
		body, err = readBody(resp)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	var e workerabi.Encoder
	if err := c.encodeReq(&e, r); err != nil {
		return err
	}
	e.U32(uint32(resp.StatusCode))
	encodeHeader(&e, resp.Header)
	e.Bytes(body)
	res, err := rawCall(workerabi.OpCachePut, e.B)
	if err != nil {
		return err
	}
	d := workerabi.Decoder{B: res}
	stored := d.U8() == 1
	reason := d.Str()
	if d.Err != nil {
		return d.Err
	}
	if !stored {
		return &NotStoredError{Reason: reason}
	}
	return nil
}

// Delete removes the responses stored for r's URL (every Vary variant) and reports whether
// there were any.
func (c *HTTPCache) Delete(r *Request) (bool, error) {
	var e workerabi.Encoder
	if err := c.encodeReq(&e, r); err != nil {
		return false, err
	}
	res, err := rawCall(workerabi.OpCacheDelete, e.B)
	if err != nil {
		return false, err
	}
	return len(res) > 0 && res[0] == 1, nil
}
