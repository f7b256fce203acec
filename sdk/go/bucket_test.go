package sdk

import (
	"testing"
	"time"
)

func TestGetOptionsFrom(t *testing.T) {
	r := &Request{Method: "GET"}
	r.Header.Add("Range", "bytes=0-9")
	r.Header.Add("If-Range", `"v1"`)
	r.Header.Add("If-None-Match", `"a", "b"`)
	r.Header.Add("If-Match", `"c"`)
	r.Header.Add("If-Modified-Since", "Wed, 02 Dec 2026 10:00:00 GMT")
	r.Header.Add("If-Unmodified-Since", "not a date")
	o := GetOptionsFrom(r)
	want := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if o.RangeHeader != "bytes=0-9" || o.OnlyIf.IfRange != `"v1"` || o.OnlyIf.IfNoneMatch != `"a", "b"` || o.OnlyIf.IfMatch != `"c"` ||
		!o.OnlyIf.IfModifiedSince.Equal(want) || !o.OnlyIf.IfUnmodifiedSince.IsZero() {
		t.Fatalf("GET: %+v", o)
	}
	// A range applies to GET only (RFC 9110 section 14.2); preconditions to every method.
	r.Method = "HEAD"
	if o := GetOptionsFrom(r); o.RangeHeader != "" || o.OnlyIf.IfRange != "" || o.OnlyIf.IfMatch != `"c"` {
		t.Fatalf("HEAD: %+v", o)
	}
}

func TestObjectContentRange(t *testing.T) {
	for _, c := range []struct {
		o    Object
		want string
	}{
		{Object{Status: 206, Offset: 10, Length: 5, Size: 100}, "bytes 10-14/100"},
		{Object{Status: 416, Size: 100}, "bytes */100"},
		{Object{Status: 200, Size: 100}, ""},
	} {
		if got := c.o.ContentRange(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.o, got, c.want)
		}
	}
}
