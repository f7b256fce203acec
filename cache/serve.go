package cache

import (
	"context"
	"strconv"
	"time"
	"unsafe"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// serve answers the request from o with Cache-Status "hit" (or "collapsed" for a request
// that waited on another's fetch).
func (t *tx) serve(s *proxy.Session, o *object, kind string, ttl time.Duration) *message.Response {
	if kind == "collapsed" {
		return t.serveWith(s, o, "fwd="+t.fwd+";collapsed", ttl)
	}
	return t.serveWith(s, o, "hit", ttl)
}

// serveWith builds the response from o for the request: the stored response, a 304 when the
// client's own validators match (RFC 9111 section 4.3.2), or a 206/416 for a single byte
// range (RFC 9110 section 14). params are the Cache-Status parameters.
func (t *tx) serveWith(s *proxy.Session, o *object, params string, ttl time.Duration) *message.Response {
	o.hits.Add(1)
	return t.serveFor(s.Context(), s.Req, o, params, ttl)
}

// serveFor is serveWith for a request outside a proxy session (the Cache API); the body
// reader stops waiting for a growing object when ctx ends.
func (t *tx) serveFor(ctx context.Context, req *message.Request, o *object, params string, ttl time.Duration) *message.Response {
	r := &t.resp
	r.Reset()
	r.Status = o.m.Status
	r.Proto = message.HTTP11
	r.Header.CopyFrom(&o.hdr)
	age := max(0, o.m.age(t.c.now().UnixNano())/time.Second)
	r.Header.Set("Age", t.str(strconv.AppendInt(t.scratch, int64(age), 10)))
	n, known := o.length()
	r.ContentLength = -1
	if known {
		r.ContentLength = n
	}
	start, end := int64(0), int64(-1)
	withBody := true
	if o.m.Status == 206 {
		// A partial object answers only ranges it holds (lookup checked); should it be asked
		// otherwise, it sends all it holds.
		a, b, ok := partialRange(req, o)
		if !ok && known && n > 0 {
			a, b = o.m.RangeStart, o.m.RangeStart+n-1
		}
		r.Header.Set("Content-Range", t.str(appendContentRange(t.scratch, a, b, o.m.RangeTotal)))
		start, end = a-o.m.RangeStart, b+1-o.m.RangeStart
		r.ContentLength = end - start
	}
	if o.m.Status == 200 {
		switch {
		case notModified(req, o):
			r.Status = 304
			r.ContentLength = -1
			withBody = false
		case known && req.Method == "GET" && req.Header.Has("Range") && ifRangeMatches(req, o):
			a, b, ok, sat := parseRange(req.Header.Get("Range"), n)
			switch {
			case ok && !sat:
				r.Status = 416
				r.Header.Set("Content-Range", t.str(strconv.AppendInt(append(t.scratch, "bytes */"...), n, 10)))
				r.ContentLength = 0
				withBody = false
			case ok:
				r.Status = 206
				r.Header.Set("Content-Range", t.str(appendContentRange(t.scratch, a, b, n)))
				start, end = a, b+1
				r.ContentLength = end - start
			}
		}
	}
	t.addStatus(&r.Header, params, ttl, params == "hit")
	if withBody && req.Method != "HEAD" && (!known || n > 0) {
		t.rd.init(ctx, o.b, start, end)
		r.Body = &t.rd
	}
	return r
}

// appendContentRange appends the Content-Range value "bytes a-b/total" (b inclusive).
func appendContentRange(dst []byte, a, b, total int64) []byte {
	dst = append(dst, "bytes "...)
	dst = strconv.AppendInt(dst, a, 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, b, 10)
	dst = append(dst, '/')
	return strconv.AppendInt(dst, total, 10)
}

// gatewayTimeout answers an only-if-cached request the cache cannot satisfy.
func (t *tx) gatewayTimeout(s *proxy.Session) *message.Response {
	r := &t.resp
	r.Reset()
	r.Status = 504
	r.Proto = message.HTTP11
	r.Header.Add("Cache-Control", "no-store")
	t.addStatus(&r.Header, "fwd=miss;detail=only-if-cached", 0, false)
	t.result = "miss"
	return r
}

// status adds this cache's Cache-Status member to a forwarded response: stored, or not with
// the reason as detail.
func (t *tx) status(h *message.Header, detail string, fwdStatus int) {
	b := append(t.scratch, t.c.name...)
	b = append(b, "; fwd="...)
	b = append(b, t.fwd...)
	if fwdStatus != 0 {
		b = append(b, ";fwd-status="...)
		b = strconv.AppendInt(b, int64(fwdStatus), 10)
	}
	switch detail {
	case "":
	case "stored":
		b = append(b, ";stored"...)
	default:
		b = append(b, ";detail="...)
		b = append(b, detail...)
	}
	h.Add("Cache-Status", t.str(b))
}

// addStatus adds "name; params" with a ttl parameter when withTTL.
func (t *tx) addStatus(h *message.Header, params string, ttl time.Duration, withTTL bool) {
	b := append(t.scratch, t.c.name...)
	b = append(b, "; "...)
	b = append(b, params...)
	if withTTL {
		b = append(b, ";ttl="...)
		b = strconv.AppendInt(b, int64(ttl/time.Second), 10)
	}
	h.Add("Cache-Status", t.str(b))
}

// str turns bytes appended to t.scratch into a string without copying. The strings stay
// valid until the transaction ends: scratch is only appended to.
func (t *tx) str(b []byte) string {
	start := len(t.scratch)
	t.scratch = b
	return unsafe.String(unsafe.SliceData(b[start:]), len(b)-start)
}

func itoa(n int) string { return strconv.Itoa(n) }

// notModified evaluates the client's If-None-Match, or else If-Modified-Since, against o
// (RFC 9110 section 13.2.2).
func notModified(req *message.Request, o *object) bool {
	if req.Header.Has("If-None-Match") {
		match := false
		req.Header.Values("If-None-Match", func(v string) bool {
			for v != "" {
				var tag string
				tag, v = splitDirective(v)
				if tag == "*" || (o.m.ETag != "" && weakEqual(tag, o.m.ETag)) {
					match = true
					return false
				}
			}
			return true
		})
		return match
	}
	ims, ok := req.Header.Lookup("If-Modified-Since")
	if !ok {
		return false
	}
	since, ok := parseHTTPDate(ims)
	if !ok {
		return false
	}
	lm := o.m.LastModified
	if lm == "" {
		lm = o.hdr.Get("Date")
	}
	t, ok := parseHTTPDate(lm)
	return ok && !t.After(since)
}

func weakEqual(a, b string) bool { return opaque(a) == opaque(b) }

func opaque(tag string) string {
	if len(tag) > 2 && tag[0] == 'W' && tag[1] == '/' {
		return tag[2:]
	}
	return tag
}

// ifRangeMatches evaluates If-Range (RFC 9110 section 13.1.5): a strong ETag match or the
// exact Last-Modified date; absent means the range applies.
func ifRangeMatches(req *message.Request, o *object) bool {
	v, ok := req.Header.Lookup("If-Range")
	if !ok {
		return true
	}
	v = message.TrimOWS(v)
	if len(v) > 0 && (v[0] == '"' || v[0] == 'W') {
		return len(v) > 0 && v[0] == '"' && v == o.m.ETag
	}
	return o.m.LastModified != "" && v == o.m.LastModified
}

// parseRange parses a single "bytes=" range against a body of size n. ok is false when the
// field is not a single byte range (the full response is sent); sat is false when the range
// is unsatisfiable (416). b is inclusive.
func parseRange(v string, n int64) (a, b int64, ok, sat bool) {
	v = message.TrimOWS(v)
	if len(v) < 6 || !message.EqualFold(v[:6], "bytes=") {
		return 0, 0, false, false
	}
	spec := message.TrimOWS(v[6:])
	for i := 0; i < len(spec); i++ {
		if spec[i] == ',' {
			return 0, 0, false, false
		}
	}
	first, last := cutByte(spec, '-')
	first, last = message.TrimOWS(first), message.TrimOWS(last)
	if len(spec) == len(first) {
		return 0, 0, false, false
	}
	switch {
	case first == "":
		k, okk := parseDelta(last)
		if !okk {
			return 0, 0, false, false
		}
		if k == 0 || n == 0 {
			return 0, 0, true, false
		}
		return max(0, n-k), n - 1, true, true
	default:
		s, oks := parseInt(first)
		if !oks {
			return 0, 0, false, false
		}
		e := n - 1
		if last != "" {
			le, oke := parseInt(last)
			if !oke || le < s {
				return 0, 0, false, false
			}
			e = min(le, n-1)
		}
		if s >= n {
			return 0, 0, true, false
		}
		return s, e, true, true
	}
}

func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
