package objstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// ListOptions select the entries of a List page.
type ListOptions struct {
	Prefix string
	// Delimiter, when set, rolls the keys that contain it after Prefix into one entry of
	// ListResult.Prefixes each: their key up to and including the delimiter's first
	// occurrence.
	Delimiter string
	// Cursor continues a listing (ListResult.Cursor).
	Cursor string
	// Limit caps objects plus prefixes, 1 to MaxListLimit. Zero means MaxListLimit.
	Limit int
}

// ListResult is one page of a listing, in key order.
type ListResult struct {
	Objects  []*Object
	Prefixes []string
	// Truncated tells that more entries follow; Cursor then continues after this page.
	Truncated bool
	Cursor    string
}

// skipAll is appended to a delimited prefix to form the key after which the next page
// starts: no UTF-8 key has the byte 0xff, so every key under the prefix sorts before it.
const skipAll = "\xff"

// List returns a page of b's objects and delimited prefixes.
func List(ctx context.Context, b Bucket, o ListOptions) (*ListResult, error) {
	limit := o.Limit
	if limit == 0 {
		limit = MaxListLimit
	}
	if limit < 0 || limit > MaxListLimit {
		return nil, fmt.Errorf("%w: list limit %d out of range 1..%d", ErrInvalid, limit, MaxListLimit)
	}
	if len(o.Prefix) > MaxKeyLen || len(o.Delimiter) > MaxKeyLen {
		return nil, fmt.Errorf("%w: prefix or delimiter longer than %d bytes", ErrInvalid, MaxKeyLen)
	}
	after := ""
	if o.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(o.Cursor)
		if err != nil || len(c) > MaxKeyLen+1 {
			return nil, fmt.Errorf("%w: bad list cursor", ErrInvalid)
		}
		after = string(c)
	}
	res := &ListResult{}
	var keys []string
	last := ""
	var ferr error
	err := b.Keys(ctx, o.Prefix, after, func(key string) bool {
		if len(res.Objects)+len(res.Prefixes) == limit {
			res.Truncated = true
			return false
		}
		if o.Delimiter != "" {
			rest := key[len(o.Prefix):]
			if i := strings.Index(rest, o.Delimiter); i >= 0 {
				p := key[:len(o.Prefix)+i+len(o.Delimiter)]
				if len(res.Prefixes) == 0 || res.Prefixes[len(res.Prefixes)-1] != p {
					res.Prefixes = append(res.Prefixes, p)
					last = p + skipAll
				}
				return true
			}
		}
		keys = append(keys, key)
		res.Objects = append(res.Objects, nil)
		last = key
		return true
	})
	if err != nil {
		return nil, err
	}
	// Metadata of the page's objects, read after the walk (a key deleted meanwhile is
	// dropped from the page).
	objs := res.Objects[:0]
	for _, k := range keys {
		obj, err := b.Head(ctx, k)
		if err != nil {
			ferr = err
			break
		}
		if obj != nil {
			objs = append(objs, obj)
		}
	}
	if ferr != nil {
		return nil, ferr
	}
	res.Objects = objs
	if res.Truncated {
		res.Cursor = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	return res, nil
}
