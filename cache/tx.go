package cache

import (
	"io"
	"time"

	"github.com/verge-edge/verge/fault"
	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

type txMode uint8

const (
	modeLookup     txMode = iota // GET or HEAD through the cache
	modeBypass                   // a bypass rule matched: Cache-Status only
	modeInvalidate               // an unsafe method: invalidate the URL on success
)

// tx is one request's cache transaction (proxy.CacheTx), pooled.
type tx struct {
	c      *Cache
	pol    *Policy
	mode   txMode
	reqCC  directives
	now    time.Time
	reqAt  time.Time // when the upstream request was sent
	result string

	key     []byte // primary key
	vary    []byte // the request's values of the Vary fields
	primary uint64
	hash    uint64
	names   []string // Vary names the key was computed with

	stale      *object // stored response being revalidated, or kept for stale-if-error
	partial    *object // stored partial response that could not answer, to combine with
	validating bool    // validators from stale were sent upstream
	completing bool    // asked the origin for the bytes after t.partial's (completeRequest)
	fwd        string  // Cache-Status fwd parameter
	flight     *flight // the lock, held when this request fetches for others
	refresh    bool    // serve-stale-while-revalidate: ask for a background refresh

	obj *object
	dw  *diskWriter
	tee teeBody

	resp    message.Response // a response served from the cache
	rd      bodyReader
	scratch []byte
}

// Lookup implements proxy.Cache.
func (c *Cache) Lookup(s *proxy.Session, ctl *proxy.CacheControl) (proxy.CacheTx, *message.Response, error) {
	req := s.Req
	switch req.Method {
	case "GET", "HEAD":
	case "OPTIONS", "TRACE", "CONNECT":
		return nil, nil, nil
	}
	t := c.txPool.Get().(*tx)
	t.pol = c.policy
	if p, ok := ctl.Policy.(*Policy); ok && p != nil {
		t.pol = p
	}
	t.now = c.now()
	t.key = t.key[:0]
	if len(ctl.Key) > 0 {
		t.key = append(t.key, keyMethod(req.Method)...)
		t.key = append(t.key, 0)
		t.key = append(t.key, ctl.Key...)
	} else {
		t.key = appendKey(t.key, req, t.pol)
	}
	t.primary = hashKey(t.key)
	if req.Method != "GET" && req.Method != "HEAD" {
		// RFC 9111 section 4.4: the key of an unsafe request is its target's GET key.
		t.mode = modeInvalidate
		t.key = t.key[:0]
		if len(ctl.Key) > 0 {
			t.key = append(append(append(t.key, "GET"...), 0), ctl.Key...)
		} else {
			saved := req.Method
			req.Method = "GET"
			t.key = appendKey(t.key, req, t.pol)
			req.Method = saved
		}
		t.primary = hashKey(t.key)
		t.fwd = "method"
		return t, nil, nil
	}
	if t.pol.bypass(req) {
		t.mode = modeBypass
		t.fwd = "bypass"
		t.result = "bypass"
		return t, nil, nil
	}
	parseDirectives(&req.Header, &t.reqCC)
	if !t.reqCC.present && req.Header.HasToken("Pragma", "no-cache") {
		t.reqCC.noCache = true // RFC 9111 section 5.4
	}
	resp := t.lookup(s, ctl.Refresh)
	return t, resp, nil
}

// lookup finds a stored response for the request, or takes the lock to fetch one. It returns
// the response to serve from the cache, or nil to go to the origin.
func (t *tx) lookup(s *proxy.Session, refresh bool) *message.Response {
	c := t.c
	req := s.Req
	now := t.now.UnixNano()
	t.fwd, t.result = "uri-miss", "miss"
	for round := 0; round < 2; round++ {
		names, known := c.idx.varyOf(t.primary)
		t.names = names
		t.vary = appendVary(t.vary[:0], req, names)
		t.hash = variantHash(t.primary, t.vary)
		o := c.get(t.hash, t.key)
		if o != nil && o.m.VaryKey != string(t.vary) {
			o = nil
		}
		if o != nil && !o.usableFor(req) {
			// A partial response without the requested bytes: fetch, then combine.
			t.partial, o = o, nil
			t.fwd = "partial"
		}
		if o != nil {
			u, ttl := evaluate(o.m, &t.reqCC, now)
			switch {
			case refresh:
				t.stale = o
			case u == useFresh:
				t.result = "hit"
				return t.serve(s, o, "hit", ttl)
			case u == useStale:
				t.result = "stale"
				return t.serve(s, o, "hit", ttl)
			case u == useSWR:
				t.result = "stale"
				t.refresh = c.inflight(t.hash) == nil
				return t.serve(s, o, "hit", ttl)
			default:
				t.stale = o
				t.fwd = "stale"
				if t.reqCC.noCache || t.reqCC.maxAge >= 0 || t.reqCC.minFresh >= 0 {
					t.fwd = "request"
				}
			}
		} else if known && t.partial == nil {
			t.fwd = "vary-miss"
		}
		if t.reqCC.onlyIfCached && !refresh {
			// RFC 9111 section 5.2.1.7: only a stored response that may be used, or 504.
			return t.gatewayTimeout(s)
		}
		if t.pol.lockTimeout() < 0 {
			return nil
		}
		f, mine := c.acquire(t.hash)
		if mine {
			if t.stale == nil && !refresh {
				// Another request may have stored the response and ended its lock between
				// the lookup above and acquire: look once more before going to the origin.
				if o := c.get(t.hash, t.key); o != nil && o.m.VaryKey == string(t.vary) && o.usableFor(req) {
					if u, ttl := evaluate(o.m, &t.reqCC, now); u == useFresh {
						c.publish(t.hash, f, nil, true)
						t.result = "hit"
						return t.serve(s, o, "hit", ttl)
					}
				}
			}
			t.flight = f
			return nil
		}
		if refresh {
			// Someone is already fetching the key: this refresh has nothing to do.
			if t.stale == nil {
				return nil // the object went meanwhile: fetch without the lock
			}
			t.result = "hit"
			return t.serve(s, t.stale, "hit", 0)
		}
		if o, ok := t.wait(s, f); ok {
			if o != nil && o.m.Primary == t.primary && o.m.VaryKey == string(appendVary(t.vary[:0], req, o.m.Vary)) && o.usableFor(req) {
				if u, ttl := evaluate(o.m, &t.reqCC, t.c.now().UnixNano()); u == useFresh || u == useStale {
					t.result = "collapsed"
					return t.serve(s, o, "collapsed", ttl)
				}
			}
			if o != nil {
				return nil // not usable for this request: go to the origin without the lock
			}
			// The fetch ended without a shareable response; look again once (a
			// revalidation may have refreshed the stored object), then go to the origin.
			t.stale = nil
			continue
		}
		return nil
	}
	return nil
}

// wait blocks until the flight has a response head, up to the policy's lock timeout. It
// returns the flight's object (nil when it had none to share) and true, or false on timeout.
func (t *tx) wait(s *proxy.Session, f *flight) (*object, bool) {
	timer := time.NewTimer(t.pol.lockTimeout())
	defer timer.Stop()
	select {
	case <-f.ready:
		t.c.metrics.CacheLockWait(false)
		return f.obj, true
	case <-timer.C:
		t.c.metrics.CacheLockWait(true)
		return nil, false
	case <-s.Context().Done():
		return nil, false
	}
}

// UpstreamRequest implements proxy.CacheTx: a revalidation carries the stored validators.
func (t *tx) UpstreamRequest(_ *proxy.Session, req *message.Request) {
	t.reqAt = t.c.now()
	if t.mode == modeLookup && t.partial != nil && t.stale == nil {
		t.completeRequest(req)
		return
	}
	if t.mode != modeLookup || t.stale == nil || t.stale.m.Status != 200 {
		return
	}
	m := t.stale.m
	if m.ETag == "" && m.LastModified == "" {
		return
	}
	req.Header.Del("If-None-Match")
	req.Header.Del("If-Modified-Since")
	if m.ETag != "" {
		req.Header.Add("If-None-Match", m.ETag)
	}
	if m.LastModified != "" {
		req.Header.Add("If-Modified-Since", m.LastModified)
	}
	t.validating = true
}

// Decide implements proxy.CacheTx.
func (t *tx) Decide(s *proxy.Session, resp *message.Response, d *proxy.CacheDecision) {
	switch t.mode {
	case modeBypass:
		d.Reason = "bypass"
		return
	case modeInvalidate:
		d.Reason = "method"
		return
	}
	if t.validating && resp.Status == 304 {
		d.Store = true
		return
	}
	var cc directives
	responseDirectives(&resp.Header, &cc, t.pol)
	if r := storable(s.Req, &t.reqCC, resp, &cc, t.pol); r != "" {
		d.Reason = r
		return
	}
	d.Store = true
}

// Response implements proxy.CacheTx.
func (t *tx) Response(s *proxy.Session, resp *message.Response, d *proxy.CacheDecision) (*message.Response, error) {
	c := t.c
	switch t.mode {
	case modeInvalidate:
		if resp.Status < 400 {
			t.invalidate(s, resp)
		}
		stripOwnTargeted(&resp.Header, t.pol)
		t.status(&resp.Header, "", 0)
		return resp, nil
	case modeBypass:
		stripOwnTargeted(&resp.Header, t.pol)
		t.status(&resp.Header, "", 0)
		return resp, nil
	}
	respAt := c.now()
	if t.validating && resp.Status == 304 && t.stale != nil {
		o := t.updateFrom304(resp, respAt)
		closeBody(resp)
		t.result = "revalidated"
		if !d.Store {
			t.release(nil)
		}
		ttl := time.Duration(o.m.Lifetime) - o.m.age(c.now().UnixNano())
		return t.serveWith(s, o, "fwd="+t.fwd+";fwd-status=304", ttl), nil
	}
	if t.stale != nil && t.staleOnError(fault.Unknown, resp.Status) {
		closeBody(resp)
		t.release(nil)
		t.result = "stale"
		return t.serveWith(s, t.stale, "fwd="+t.fwd+";fwd-status="+itoa(resp.Status), 0), nil
	}
	if t.completing && !t.completeResponse(s, resp) {
		// A 206 that does not continue the stored bytes, or a 416: the client sent no
		// Range and must not get either (RFC 9110 section 15.3.7). Ask the origin once
		// more, for the whole response this time.
		closeBody(resp)
		t.partial, t.completing = nil, false
		return nil, proxy.ErrRefetch
	}
	if !d.Store {
		t.release(nil)
		stripOwnTargeted(&resp.Header, t.pol)
		t.status(&resp.Header, d.Reason, resp.Status)
		return resp, nil
	}
	t.store(s, resp, d, respAt)
	return resp, nil
}

// store starts storing resp: its body is teed into a new object as it streams to the client,
// and requests waiting on the lock read that object as it grows.
func (t *tx) store(s *proxy.Session, resp *message.Response, d *proxy.CacheDecision, respAt time.Time) {
	c := t.c
	var cc directives
	responseDirectives(&resp.Header, &cc, t.pol)
	stripOwnTargeted(&resp.Header, t.pol)
	names := varyNames(&resp.Header)
	varyKey := appendVary(nil, s.Req, names)
	hash := variantHash(t.primary, varyKey)
	hdr := resp.Header.Clone()
	url := string(appendURL(nil, s.Req))
	m := buildMeta(t.key, url, t.primary, hash, resp, hdr, &cc, t.pol, t.reqAt, respAt, names, varyKey)
	if d.TTL > 0 {
		m.Lifetime = int64(d.TTL)
	}
	if resp.Status == 206 {
		a, b, total, _ := parseContentRange(resp.Header.Get("Content-Range"))
		m.RangeStart, m.RangeTotal, m.BodyLen = a, total, b-a+1
	}
	if m.Lifetime <= 0 && m.ETag == "" && m.LastModified == "" && m.SWR < 0 && m.SIE < 0 {
		// Never usable without a validator: not worth storing.
		t.release(nil)
		t.status(&resp.Header, "no-freshness", resp.Status)
		return
	}
	o := newObject(m, newBody(t.pol.maxObjectSize(), resp.ContentLength))
	t.obj = o
	if c.disk != nil {
		dw, err := c.disk.create(m)
		if err != nil {
			c.log.Warn("cache: disk tier", "err", err)
		} else {
			t.dw = dw
		}
	}
	if t.flight != nil {
		if hash != t.hash {
			// The response varies differently than the lock's key assumed: other
			// requests cannot know whether it suits them.
			t.release(nil)
		} else {
			c.publish(t.hash, t.flight, o, false)
		}
	}
	t.status(&resp.Header, "stored", 0)
	if resp.Body == nil {
		t.complete()
		return
	}
	t.tee = teeBody{src: resp.Body, t: t, want: resp.ContentLength}
	resp.Body = &t.tee
}

// complete finishes a stored object: it enters the tiers and the lock is released.
func (t *tx) complete() {
	o := t.obj
	o.b.finish()
	n, _ := o.b.state()
	if o.m.BodyLen >= 0 && n != o.m.BodyLen {
		t.abandon(errIncomplete)
		return
	}
	if t.partial != nil && o.m.Status == 206 {
		if merged := combine(t.partial, o, t.pol.maxObjectSize()); merged != nil {
			o = merged
			if t.dw != nil {
				t.dw.abort()
				t.dw = nil
				t.rewriteDisk(o)
			}
		}
	}
	if t.dw != nil {
		if err := t.dw.commit(); err != nil {
			t.c.log.Warn("cache: disk tier", "err", err)
		}
		t.dw = nil
	}
	t.c.insert(o)
	t.c.metrics.CacheBytes("stored", n)
	t.obj = nil
	t.release(o)
}

// abandon gives up storing the object; readers of it fail.
func (t *tx) abandon(err error) {
	if t.obj != nil {
		t.obj.b.fail(err)
		t.obj = nil
	}
	if t.dw != nil {
		t.dw.abort()
		t.dw = nil
	}
	t.release(nil)
}

// release ends the lock this request holds, sharing o (nil: nothing).
func (t *tx) release(o *object) {
	if t.flight != nil {
		t.c.publish(t.hash, t.flight, o, true)
		t.flight = nil
	}
}

// updateFrom304 freshens the stored response with a 304's fields (RFC 9111 section 4.3.4)
// and stores the result under the same key.
func (t *tx) updateFrom304(resp *message.Response, respAt time.Time) *object {
	old := t.stale
	hdr := old.hdr.Clone()
	seen := map[string]bool{}
	for _, f := range resp.Header.Fields() {
		if message.EqualFold(f.Name, "Content-Length") || message.EqualFold(f.Name, "Content-Range") {
			continue
		}
		lname := lower(f.Name)
		if !seen[lname] {
			seen[lname] = true
			hdr.Del(f.Name)
		}
		hdr.Add(cloneString(f.Name), cloneString(f.Value))
	}
	var cc directives
	responseDirectives(&hdr, &cc, t.pol)
	stripOwnTargeted(&hdr, t.pol)
	m := *old.m
	m.Header = nil
	m.ReqTime, m.RespTime = t.reqAt.UnixNano(), respAt.UnixNano()
	setHeaderFacts(&m, &hdr, &cc, t.pol, respAt)
	o := newObject(&m, old.b)
	c := t.c
	if c.disk != nil && c.disk.has(m.Hash) {
		t.rewriteDisk(o)
	}
	c.insert(o)
	t.release(o)
	return o
}

// rewriteDisk writes o's new head in front of its body on disk.
func (t *tx) rewriteDisk(o *object) {
	dw, err := t.c.disk.create(o.m)
	if err != nil {
		t.c.log.Warn("cache: disk tier", "err", err)
		return
	}
	var r bodyReader
	r.init(nil, o.b, 0, -1)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		dw.write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			r.Close()
			dw.abort()
			return
		}
	}
	r.Close()
	if err := dw.commit(); err != nil {
		t.c.log.Warn("cache: disk tier", "err", err)
	}
}

// invalidate removes the stored responses for the target of a successful unsafe request,
// and for its Location and Content-Location when on the same host (RFC 9111 section 4.4).
func (t *tx) invalidate(s *proxy.Session, resp *message.Response) {
	c := t.c
	c.invalidatePrimary(t.primary)
	for _, name := range [...]string{"Location", "Content-Location"} {
		v, ok := resp.Header.Lookup(name)
		if !ok {
			continue
		}
		target, ok := sameOriginTarget(v, s.Req)
		if !ok {
			continue
		}
		r := message.Request{Method: "GET", Scheme: s.Req.Scheme, Authority: s.Req.Authority, Target: target, Header: s.Req.Header}
		key := appendKey(nil, &r, t.pol)
		c.invalidatePrimary(hashKey(key))
	}
}

// sameOriginTarget returns the origin-form target of a URI reference when it points to the
// request's own host.
func sameOriginTarget(ref string, req *message.Request) (string, bool) {
	if len(ref) > 0 && ref[0] == '/' && (len(ref) == 1 || ref[1] != '/') {
		return ref, true
	}
	rest := ref
	switch {
	case len(rest) > 7 && message.EqualFold(rest[:7], "http://"):
		rest = rest[7:]
	case len(rest) > 8 && message.EqualFold(rest[:8], "https://"):
		rest = rest[8:]
	default:
		return "", false
	}
	host, path := cutByte(rest, '/')
	if !message.EqualFold(host, req.Authority) {
		return "", false
	}
	return "/" + path, true
}

// staleOnError reports whether the stored response kept in t.stale may answer the request
// instead of an origin failure: an error of kind, or a response with status. RFC 5861's
// stale-if-error covers errors and 5xx; the policy's UseStale adds its conditions.
func (t *tx) staleOnError(kind fault.Kind, status int) bool {
	m := t.stale.m
	if status == 0 || status >= 500 {
		if staleIfError(m, &t.reqCC, t.c.now().UnixNano()) {
			return true
		}
	}
	if m.MustRevalidate || m.NoCache || len(t.pol.UseStale) == 0 {
		return false
	}
	cond := staleCondition(kind, status)
	return cond != "" && t.pol.useStale(cond)
}

// UpstreamError implements proxy.CacheTx: stale-if-error and the policy's UseStale.
func (t *tx) UpstreamError(s *proxy.Session, err *fault.Error) *message.Response {
	t.release(nil)
	if t.mode != modeLookup || t.stale == nil || !t.staleOnError(err.Kind, 0) {
		return nil
	}
	t.result = "stale"
	return t.serveWith(s, t.stale, "fwd="+t.fwd+";detail=stale-if-error", 0)
}

// Done implements proxy.CacheTx.
func (t *tx) Done(s *proxy.Session, err *fault.Error) bool {
	c := t.c
	if t.obj != nil {
		t.abandon(errIncomplete)
	}
	t.release(nil)
	if t.result != "" {
		c.metrics.CacheResult(t.result)
	}
	if t.resp.Status != 0 && s.BytesSent > 0 {
		c.metrics.CacheBytes("served", s.BytesSent)
	}
	refresh := t.refresh && err == nil
	t.reset()
	c.txPool.Put(t)
	return refresh
}

func (t *tx) reset() {
	t.pol, t.mode, t.result, t.fwd = nil, modeLookup, "", ""
	t.stale, t.validating, t.flight, t.refresh, t.partial = nil, false, nil, false, nil
	t.completing = false
	t.obj, t.dw, t.names = nil, nil, nil
	t.tee = teeBody{}
	t.resp.Reset()
	t.rd = bodyReader{}
	t.scratch = t.scratch[:0]
	if cap(t.scratch) > 4096 {
		t.scratch = nil
	}
	if cap(t.key) > 4096 {
		t.key = nil
	}
}

// teeBody copies an origin body into the object being stored as the client reads it.
type teeBody struct {
	src  io.ReadCloser
	t    *tx
	want int64
	eof  bool
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	t := b.t
	if n > 0 && t.obj != nil {
		if werr := t.obj.b.write(p[:n]); werr != nil {
			t.abandon(werr)
		} else if t.dw != nil {
			t.dw.write(p[:n])
		}
	}
	if err == io.EOF && !b.eof {
		b.eof = true
		if t.obj != nil {
			t.complete()
		}
	}
	return n, err
}

func (b *teeBody) Close() error {
	if !b.eof && b.t.obj != nil {
		b.t.abandon(errIncomplete)
	}
	return b.src.Close()
}

func closeBody(r *message.Response) {
	if r.Body != nil {
		r.Body.Close()
		r.Body = nil
	}
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return string(appendLower(nil, s))
		}
	}
	return s
}

func cloneString(s string) string { return string(append([]byte(nil), s...)) }

// appendURL appends the request's absolute URL, the form purges match.
func appendURL(dst []byte, req *message.Request) []byte {
	scheme := req.Scheme
	if scheme == "" {
		scheme = "http"
	}
	dst = append(dst, scheme...)
	dst = append(dst, "://"...)
	dst = appendLower(dst, hostForKey(req.Authority, scheme))
	return append(dst, req.Target...)
}
