package cache

import (
	"io"
	"strconv"

	"github.com/verge-edge/verge/message"
	"github.com/verge-edge/verge/proxy"
)

// Partial content (RFC 9111 sections 3.3 and 3.4). A 206 answer to a single byte range is
// stored as a partial object: its status stays 206, meta.RangeStart and meta.RangeTotal say
// where its bytes sit in the full representation, and its body holds those bytes only. A
// range request that falls inside the stored bytes is answered from them; any other request
// goes to the origin (Cache-Status fwd=partial). When another 206 for the same URL carries
// the same strong ETag and its range touches or overlaps the stored one, the two are
// combined; once the bytes cover the whole representation the object becomes a complete 200.

// parseContentRange parses "bytes first-last/complete" with a known complete length.
func parseContentRange(v string) (first, last, complete int64, ok bool) {
	v = message.TrimOWS(v)
	if len(v) < 6 || !message.EqualFold(v[:6], "bytes ") {
		return 0, 0, 0, false
	}
	rng, total := cutByte(v[6:], '/')
	a, b := cutByte(rng, '-')
	first, ok1 := parseInt(a)
	last, ok2 := parseInt(b)
	complete, ok3 := parseInt(total)
	if !ok1 || !ok2 || !ok3 || first > last || last >= complete {
		return 0, 0, 0, false
	}
	return first, last, complete, true
}

// partialStorable reports whether a 206 can be stored: one byte range of a known length,
// with a body of that range's length when the length is declared.
func partialStorable(resp *message.Response) bool {
	if resp.Header.Count("Content-Range") != 1 {
		return false
	}
	a, b, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
	return ok && (resp.ContentLength < 0 || resp.ContentLength == b-a+1)
}

// partialRange resolves the request's single byte range against a partial object and reports
// whether the stored bytes hold all of it (and If-Range, when sent, matches). b is inclusive.
func partialRange(req *message.Request, o *object) (a, b int64, ok bool) {
	if req.Method != "GET" || !req.Header.Has("Range") || !ifRangeMatches(req, o) {
		return 0, 0, false
	}
	a, b, ok, sat := parseRange(req.Header.Get("Range"), o.m.RangeTotal)
	if !ok || !sat {
		return 0, 0, false
	}
	have := o.m.BodyLen
	if n, done := o.b.state(); done {
		have = n
	}
	if have < 0 || a < o.m.RangeStart || b >= o.m.RangeStart+have {
		return 0, 0, false
	}
	return a, b, true
}

// usableFor reports whether o can answer req: a complete response always, a partial one when
// it holds the requested range.
func (o *object) usableFor(req *message.Request) bool {
	if o.m.Status != 206 {
		return true
	}
	_, _, ok := partialRange(req, o)
	return ok
}

// strongETag reports whether two stored responses share a strong entity tag.
func strongETag(a, b *meta) bool {
	return a.ETag != "" && a.ETag == b.ETag && a.ETag[0] == '"'
}

// combine merges the partial object prev, stored before, with next, a partial object just
// received in full, when they may be combined (RFC 9111 section 3.4: the same strong
// validator and length), their ranges touch and the result holds at most limit bytes (the
// policy's largest object: each piece is within it, their union need not be). It returns
// the combined object (a complete 200 when it covers everything), or nil.
func combine(prev, next *object, limit int64) *object {
	pm, nm := prev.m, next.m
	if pm.Status != 206 || nm.Status != 206 || pm.RangeTotal != nm.RangeTotal || !strongETag(pm, nm) || next.b.data == nil {
		return nil
	}
	ps, pe := pm.RangeStart, pm.RangeStart+pm.BodyLen
	ns, ne := nm.RangeStart, nm.RangeStart+int64(len(next.b.data))
	if pm.BodyLen < 0 || ns > pe || ps > ne {
		return nil // a gap between them
	}
	lo, hi := min(ps, ns), max(pe, ne)
	if hi-lo > limit {
		return nil
	}
	data := make([]byte, hi-lo)
	var r bodyReader
	r.init(nil, prev.b, 0, -1)
	n, err := readFull(&r, data[ps-lo:pe-lo])
	r.Close()
	if err != nil || int64(n) != pe-ps {
		return nil
	}
	copy(data[ns-lo:], next.b.data)
	m := *nm
	m.BodyLen = hi - lo
	m.RangeStart = lo
	m.Header = make([]message.Field, 0, len(nm.Header)+1)
	for _, f := range nm.Header {
		if !message.EqualFold(f.Name, "Content-Range") {
			m.Header = append(m.Header, f)
		}
	}
	if lo == 0 && hi == m.RangeTotal {
		m.Status, m.RangeStart, m.RangeTotal = 200, 0, 0
	} else {
		m.Header = append(m.Header, message.Field{Name: "Content-Range", Value: string(appendContentRange(nil, lo, hi-1, m.RangeTotal))})
	}
	return newObject(&m, completeBody(data))
}

// completeRequest turns the upstream request for a whole response into one for the bytes
// after those of t.partial, when they are the representation's beginning under a strong
// ETag and the client sent no range, conditional or body of its own (a body could not be
// sent again if the answer has to be asked for once more, see completeResponse).
func (t *tx) completeRequest(req *message.Request) {
	pm := t.partial.m
	if req.Method != "GET" || req.Body != nil || pm.RangeStart != 0 || pm.BodyLen <= 0 || pm.BodyLen >= pm.RangeTotal ||
		pm.ETag == "" || pm.ETag[0] != '"' {
		return
	}
	for _, h := range [...]string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if req.Header.Has(h) {
			return
		}
	}
	req.Header.Add("Range", "bytes="+strconv.FormatInt(pm.BodyLen, 10)+"-")
	req.Header.Add("If-Range", pm.ETag)
	t.completing = true
}

// completeResponse turns the origin's answer to completeRequest into the whole response: a
// 206 with exactly the missing bytes under the same ETag becomes a 200 whose body is the
// stored bytes followed by the origin's. Any other status but 416 (a 200: the
// representation changed; an error) is left alone, to be served and stored as usual. It
// reports false for a 416 or a 206 that cannot be joined to the stored bytes: the client,
// who sent no Range, must get neither, and Response asks the origin again without Range.
func (t *tx) completeResponse(s *proxy.Session, resp *message.Response) bool {
	if resp.Status != 206 {
		return resp.Status != 416
	}
	pm := t.partial.m
	a, b, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || a != pm.BodyLen || b != total-1 || total != pm.RangeTotal || resp.Header.Get("ETag") != pm.ETag ||
		resp.Header.Count("Content-Range") != 1 || (resp.ContentLength >= 0 && resp.ContentLength != b-a+1) || resp.Body == nil {
		return false
	}
	resp.Status = 200
	resp.Header.Del("Content-Range")
	resp.ContentLength = total
	t.rd.init(s.Context(), t.partial.b, 0, pm.BodyLen)
	resp.Body = &joinBody{head: &t.rd, tail: resp.Body}
	return true
}

// joinBody reads a stored beginning, then the origin's rest.
type joinBody struct {
	head     *bodyReader
	tail     io.ReadCloser
	headDone bool
}

func (j *joinBody) Read(p []byte) (int, error) {
	if !j.headDone {
		n, err := j.head.Read(p)
		if err != io.EOF {
			return n, err
		}
		j.headDone = true
		j.head.Close()
		if n > 0 {
			return n, nil
		}
	}
	return j.tail.Read(p)
}

func (j *joinBody) Close() error {
	if !j.headDone {
		j.headDone = true
		j.head.Close()
	}
	return j.tail.Close()
}
