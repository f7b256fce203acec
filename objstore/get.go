package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Range selects part of an object's body. Exactly one form is used: Suffix > 0 is the last
// Suffix bytes; otherwise Offset and Length (0: to the end).
type Range struct {
	Offset int64
	Length int64
	Suffix int64
}

// Conditions are the preconditions of a read, as in RFC 9110 section 13.1. Empty strings
// and zero times are absent. Entity-tag lists are header values ("*" or a comma-separated
// list of quoted tags).
type Conditions struct {
	IfMatch           string
	IfNoneMatch       string
	IfModifiedSince   time.Time
	IfUnmodifiedSince time.Time
	// IfRange makes RangeHeader apply only when it matches: a quoted strong entity tag or
	// an HTTP date.
	IfRange string
}

// GetOptions select what a Get returns.
type GetOptions struct {
	Conditions
	// Range is an explicit range; a range beyond the object fails with ErrInvalid.
	Range *Range
	// RangeHeader is a request's Range header field, evaluated as RFC 9110 section 14
	// says (ignored when Range is set): a bad or multi-range value reads the whole object,
	// an unsatisfiable one answers 416.
	RangeHeader string
	// Head skips the body: a HEAD request's preconditions (no range).
	Head bool
}

// Result is the outcome of a Get.
type Result struct {
	// Object is the metadata; nil when the object does not exist (then nothing else is
	// set).
	Object *Object
	// Status is the HTTP status the outcome maps to: 200, 206 (a range), 304 (not
	// modified), 412 (precondition failed) or 416 (range not satisfiable).
	Status int
	// Offset and Length are the bytes of the body that Body reads.
	Offset, Length int64
	// Body reads the selected bytes for 200 and 206 (not for Head); the caller closes it.
	Body io.ReadCloser
}

// ContentRange returns the Content-Range field value of a 206 or 416 result, "" otherwise.
func (r *Result) ContentRange() string {
	switch r.Status {
	case 206:
		return fmt.Sprintf("bytes %d-%d/%d", r.Offset, r.Offset+r.Length-1, r.Object.Size)
	case 416:
		return fmt.Sprintf("bytes */%d", r.Object.Size)
	}
	return ""
}

// getAttempts bounds the reads of an object replaced between its metadata and its body.
const getAttempts = 3

// Get reads key from b under o's preconditions and range (RFC 9110 sections 13.2.2 and
// 14.2).
func Get(ctx context.Context, b Bucket, key string, o GetOptions) (*Result, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	for range getAttempts - 1 {
		res, err := get(ctx, b, key, &o)
		if err != errReplaced {
			return res, err
		}
	}
	res, err := get(ctx, b, key, &o)
	if err == errReplaced {
		err = fmt.Errorf("objstore: object %q replaced %d times while being read", key, getAttempts)
	}
	return res, err
}

// errReplaced is get's report of an object replaced between its metadata and its body.
var errReplaced = errors.New("objstore: replaced while read")

func get(ctx context.Context, b Bucket, key string, o *GetOptions) (*Result, error) {
	obj, err := b.Head(ctx, key)
	if err != nil || obj == nil {
		return &Result{}, err
	}
	res := &Result{Object: obj}
	res.Status = Evaluate(obj, &o.Conditions)
	if res.Status != 200 {
		return res, nil
	}
	res.Offset, res.Length = 0, obj.Size
	switch {
	case o.Range != nil:
		off, n, err := explicitRange(o.Range, obj.Size)
		if err != nil {
			return nil, err
		}
		res.Offset, res.Length, res.Status = off, n, 206
	case o.RangeHeader != "" && !o.Head && ifRange(obj, o.IfRange):
		switch off, n, ok := parseRange(o.RangeHeader, obj.Size); {
		case !ok:
		case n < 0:
			res.Status = 416
			return res, nil
		default:
			res.Offset, res.Length, res.Status = off, n, 206
		}
	}
	if o.Head {
		return res, nil
	}
	obj2, body, err := b.Open(ctx, key, res.Offset, res.Length)
	if err != nil {
		return nil, err
	}
	if obj2 == nil {
		return &Result{}, nil // deleted meanwhile
	}
	if obj2.ETag != obj.ETag || !obj2.Uploaded.Equal(obj.Uploaded) {
		// Replaced between Head and Open: evaluate again.
		body.Close()
		return nil, errReplaced
	}
	res.Body = body
	return res, nil
}

// Evaluate returns the status of a request with conditions c on obj, in the order of RFC
// 9110 section 13.2.2: 412 when If-Match (or, without it, If-Unmodified-Since) fails; 304
// when If-None-Match (or, without it, If-Modified-Since) fails (the request being a GET or
// HEAD), 200 otherwise.
func Evaluate(obj *Object, c *Conditions) int {
	mod := obj.Uploaded.Truncate(time.Second)
	if c.IfMatch != "" {
		if !matchETag(c.IfMatch, obj.ETag, false) {
			return 412
		}
	} else if !c.IfUnmodifiedSince.IsZero() && mod.After(c.IfUnmodifiedSince) {
		return 412
	}
	if c.IfNoneMatch != "" {
		if matchETag(c.IfNoneMatch, obj.ETag, true) {
			return 304
		}
	} else if !c.IfModifiedSince.IsZero() && !mod.After(c.IfModifiedSince) {
		return 304
	}
	return 200
}

// matchETag reports whether the entity-tag list (a header value) matches etag (unquoted):
// strong comparison unless weak (RFC 9110 section 8.8.3.2).
func matchETag(list, etag string, weak bool) bool {
	list = strings.TrimSpace(list)
	if list == "*" {
		return true
	}
	for t := range strings.SplitSeq(list, ",") {
		t = strings.TrimSpace(t)
		isWeak := strings.HasPrefix(t, "W/")
		if isWeak {
			if !weak {
				continue
			}
			t = t[2:]
		}
		if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
			t = t[1 : len(t)-1]
		}
		if t == etag {
			return true
		}
	}
	return false
}

// ifRange reports whether a Range applies under If-Range v (RFC 9110 section 13.1.5): always
// without it; with an entity tag, when it matches strongly; with a date, when it equals the
// last modification exactly.
func ifRange(obj *Object, v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, `"`) {
		return len(v) >= 2 && v[len(v)-1] == '"' && v[1:len(v)-1] == obj.ETag
	}
	t, err := time.Parse(httpTime, v)
	return err == nil && t.Equal(obj.Uploaded.Truncate(time.Second))
}

// httpTime is the HTTP date format (IMF-fixdate).
const httpTime = "Mon, 02 Jan 2006 15:04:05 GMT"

// explicitRange resolves r on an object of size bytes.
func explicitRange(r *Range, size int64) (off, n int64, err error) {
	switch {
	case r.Offset < 0 || r.Length < 0 || r.Suffix < 0:
		return 0, 0, fmt.Errorf("%w: negative range", ErrInvalid)
	case r.Suffix > 0:
		n = min(r.Suffix, size)
		return size - n, n, nil
	case r.Offset > size || r.Offset == size && size > 0:
		return 0, 0, fmt.Errorf("%w: range offset %d beyond the object's %d bytes", ErrInvalid, r.Offset, size)
	}
	n = size - r.Offset
	if r.Length > 0 {
		n = min(n, r.Length)
	}
	return r.Offset, n, nil
}

// parseRange evaluates a Range header field value on a representation of size bytes (RFC
// 9110 section 14.1.2): ok false when the header is to be ignored (not a single bytes range),
// n -1 when the range is unsatisfiable.
func parseRange(v string, size int64) (off, n int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" {
		// A suffix: the last bytes.
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 || !digits(last) {
			return 0, 0, false
		}
		if k == 0 || size == 0 {
			return 0, -1, true
		}
		k = min(k, size)
		return size - k, k, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || !digits(first) {
		return 0, 0, false
	}
	end := size - 1
	if last != "" {
		b, err := strconv.ParseInt(last, 10, 64)
		if err != nil || !digits(last) || b < a {
			return 0, 0, false
		}
		end = min(b, size-1)
	}
	if a >= size {
		return 0, -1, true
	}
	return a, end - a + 1, true
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
