package files

import (
	"strconv"
	"strings"
	"time"

	"github.com/verge-edge/verge/internal/httpdate"
	"github.com/verge-edge/verge/message"
)

// timeFormat is the HTTP date (IMF-fixdate, RFC 9110 section 5.6.7).
const timeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// parseDate reads an HTTP date in any of the three formats RFC 9110 section 5.6.7 accepts,
// with the cache's allocation-free parser.
func parseDate(s string) (time.Time, bool) { return httpdate.Parse(s) }

// makeETag builds the validator NGINX uses, "<mtime>-<size>" in hex, with the coding's token
// appended for a precompressed variant.
func makeETag(mod time.Time, size int64, coding string) string {
	b := make([]byte, 0, 40)
	b = append(b, '"')
	b = strconv.AppendInt(b, mod.Unix(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, size, 16)
	if coding != "" {
		b = append(b, '-')
		b = append(b, coding...)
	}
	b = append(b, '"')
	return string(b)
}

// matchETag reports whether the list (an If-Match or If-None-Match value) holds etag or "*";
// weak compares opaque tags only (RFC 9110 section 8.8.3.2).
func matchETag(list, etag string, weak bool) bool {
	list = strings.TrimSpace(list)
	if list == "*" {
		return true
	}
	for list != "" {
		var t string
		if i := strings.IndexByte(list, ','); i >= 0 {
			t, list = list[:i], list[i+1:]
		} else {
			t, list = list, ""
		}
		t = strings.TrimSpace(t)
		isWeak := strings.HasPrefix(t, "W/")
		if weak {
			if strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
				return true
			}
		} else if !isWeak && !strings.HasPrefix(etag, "W/") && t == etag {
			return true
		}
	}
	return false
}

// precondition is the outcome of evaluating the conditional fields.
type precondition int

const (
	proceed      precondition = iota
	notModified               // 304
	failed                    // 412
	ignoreRange               // If-Range did not match: send the whole representation
	proceedRange              // a Range may be honoured
)

// evaluate applies RFC 9110 section 13.2.2's order: If-Match, else If-Unmodified-Since;
// If-None-Match, else If-Modified-Since (GET and HEAD); then If-Range for a Range.
func evaluate(req *message.Request, etag string, mod time.Time) precondition {
	h := &req.Header
	mod = mod.Truncate(time.Second)
	if im, ok := h.Lookup("If-Match"); ok {
		if !matchETag(im, etag, false) {
			return failed
		}
	} else if ius, ok := h.Lookup("If-Unmodified-Since"); ok {
		if t, ok := parseDate(ius); ok && mod.After(t) {
			return failed
		}
	}
	if inm, ok := h.Lookup("If-None-Match"); ok {
		if matchETag(inm, etag, true) {
			return notModified // only GET and HEAD reach here
		}
	} else if ims, ok := h.Lookup("If-Modified-Since"); ok {
		if t, ok := parseDate(ims); ok && !mod.After(t) {
			return notModified
		}
	}
	if !h.Has("Range") || req.Method != "GET" {
		return proceed
	}
	if ir, ok := h.Lookup("If-Range"); ok {
		ir = strings.TrimSpace(ir)
		if strings.HasPrefix(ir, "\"") || strings.HasPrefix(ir, "W/") {
			if !matchETag(ir, etag, false) {
				return ignoreRange
			}
		} else if t, ok := parseDate(ir); !ok || !t.Equal(mod) {
			return ignoreRange
		}
	}
	return proceedRange
}

// byteRange is one satisfiable range: start and length.
type byteRange struct{ start, length int64 }

// maxRanges bounds the ranges of one request; more are answered with the whole file, as is
// a set of ranges asking for more bytes than the file has (overlaps used to amplify).
const maxRanges = 16

// parseRange reads a Range value against a representation of size bytes. It returns the
// ranges to send; unsatisfiable when none can be; ignore when the field is malformed, not
// in bytes, or abusive, and the whole representation should be sent (RFC 9110 section
// 14.2 lets a server ignore Range).
func parseRange(v string, size int64) (rs []byteRange, unsatisfiable, ignore bool) {
	unit, set, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, false, true
	}
	var total int64
	n := 0
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		if n++; n > maxRanges {
			return nil, false, true
		}
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return nil, false, true
		}
		var r byteRange
		if first == "" {
			// A suffix: the last n bytes.
			k, err := strconv.ParseInt(last, 10, 64)
			if err != nil || k < 0 {
				return nil, false, true
			}
			if k == 0 || size == 0 {
				continue
			}
			k = min(k, size)
			r = byteRange{size - k, k}
		} else {
			a, err := strconv.ParseInt(first, 10, 64)
			if err != nil || a < 0 {
				return nil, false, true
			}
			end := size - 1
			if last != "" {
				b, err := strconv.ParseInt(last, 10, 64)
				if err != nil || b < a {
					return nil, false, true
				}
				end = min(b, size-1)
			}
			if a >= size {
				continue
			}
			r = byteRange{a, end - a + 1}
		}
		total += r.length
		rs = append(rs, r)
	}
	if n == 0 {
		return nil, false, true
	}
	if len(rs) == 0 {
		return nil, true, false
	}
	if total > size {
		return nil, false, true
	}
	return rs, false, false
}
