package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func put(t *testing.T, b Bucket, key, body string) *Object {
	t.Helper()
	o, err := b.Put(context.Background(), key, strings.NewReader(body), PutOptions{})
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return o
}

func read(t *testing.T, b Bucket, key string, o GetOptions) (*Result, string) {
	t.Helper()
	res, err := Get(context.Background(), b, key, o)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if res.Body == nil {
		return res, ""
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(data)
}

// testBucket checks a Bucket implementation: puts, metadata, checksums, ranges,
// preconditions, listing, deletes and multipart uploads. s3ETags accepts a multipart ETag
// without the "-<parts>" suffix (the S3 server under test computes its own).
func testBucket(t *testing.T, b Bucket, s3ETags bool) {
	ctx := context.Background()
	body := "hello, object storage"
	sum := md5.Sum([]byte(body))
	o, err := b.Put(ctx, "a/b.txt", strings.NewReader(body), PutOptions{
		HTTP:   HTTPMetadata{ContentType: "text/plain"},
		Custom: map[string]string{"owner": "me"},
		MD5:    sum[:],
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != int64(len(body)) || o.ETag == "" {
		t.Fatalf("put: %+v", o)
	}
	h, err := b.Head(ctx, "a/b.txt")
	if err != nil || h == nil || h.ETag != o.ETag || h.HTTP.ContentType != "text/plain" || h.Custom["owner"] != "me" || h.Size != o.Size {
		t.Fatalf("head: %+v %v", h, err)
	}
	if h, err := b.Head(ctx, "missing"); h != nil || err != nil {
		t.Fatalf("head of a missing key: %+v %v", h, err)
	}
	res, got := read(t, b, "a/b.txt", GetOptions{})
	if res.Status != 200 || got != body {
		t.Fatalf("get: %d %q", res.Status, got)
	}

	// A checksum mismatch stores nothing and leaves the old object.
	bad := sha256.Sum256([]byte("something else"))
	if _, err := b.Put(ctx, "a/b.txt", strings.NewReader("replacement"), PutOptions{SHA256: bad[:]}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("put with a wrong sha256: %v", err)
	}
	if _, err := b.Put(ctx, "new", strings.NewReader("replacement"), PutOptions{MD5: sum[:]}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("put with a wrong md5: %v", err)
	}
	if h, _ := b.Head(ctx, "new"); h != nil {
		t.Fatal("a put that failed its checksum stored an object")
	}
	if _, got := read(t, b, "a/b.txt", GetOptions{}); got != body {
		t.Fatalf("a failed put changed the object: %q", got)
	}

	// Ranges (RFC 9110 section 14).
	for _, c := range []struct {
		hdr    string
		r      *Range
		status int
		want   string
		cr     string
	}{
		{hdr: "bytes=0-4", status: 206, want: "hello", cr: "bytes 0-4/21"},
		{hdr: "bytes=7-", status: 206, want: "object storage", cr: "bytes 7-20/21"},
		{hdr: "bytes=-7", status: 206, want: "storage", cr: "bytes 14-20/21"},
		{hdr: "bytes=-100", status: 206, want: body, cr: "bytes 0-20/21"},
		{hdr: "bytes=15-100", status: 206, want: "torage", cr: "bytes 15-20/21"},
		{hdr: "bytes=21-", status: 416, cr: "bytes */21"},
		{hdr: "bytes=-0", status: 416, cr: "bytes */21"},
		{hdr: "bytes=0-1,3-4", status: 200, want: body}, // multiple ranges: ignored
		{hdr: "bytes=5-2", status: 200, want: body},     // invalid: ignored
		{hdr: "items=0-1", status: 200, want: body},     // other unit: ignored
		{r: &Range{Offset: 7, Length: 6}, status: 206, want: "object", cr: "bytes 7-12/21"},
		{r: &Range{Suffix: 3}, status: 206, want: "age", cr: "bytes 18-20/21"},
	} {
		res, got := read(t, b, "a/b.txt", GetOptions{RangeHeader: c.hdr, Range: c.r})
		if res.Status != c.status || got != c.want || res.ContentRange() != c.cr {
			t.Errorf("range %q %+v: got %d %q %q, want %d %q %q", c.hdr, c.r, res.Status, got, res.ContentRange(), c.status, c.want, c.cr)
		}
	}
	if _, err := Get(ctx, b, "a/b.txt", GetOptions{Range: &Range{Offset: 50}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("explicit range beyond the object: %v", err)
	}

	// Preconditions (RFC 9110 section 13.2.2).
	tag := `"` + o.ETag + `"`
	past, future := o.Uploaded.Add(-time.Hour), o.Uploaded.Add(time.Hour)
	for _, c := range []struct {
		name   string
		c      Conditions
		status int
	}{
		{"if-match hit", Conditions{IfMatch: tag}, 200},
		{"if-match list", Conditions{IfMatch: `"x", ` + tag}, 200},
		{"if-match star", Conditions{IfMatch: "*"}, 200},
		{"if-match miss", Conditions{IfMatch: `"nope"`}, 412},
		{"if-match weak never matches", Conditions{IfMatch: "W/" + tag}, 412},
		{"if-none-match hit", Conditions{IfNoneMatch: tag}, 304},
		{"if-none-match weak", Conditions{IfNoneMatch: "W/" + tag}, 304},
		{"if-none-match miss", Conditions{IfNoneMatch: `"nope"`}, 200},
		{"if-modified-since past", Conditions{IfModifiedSince: past}, 200},
		{"if-modified-since future", Conditions{IfModifiedSince: future}, 304},
		{"if-unmodified-since past", Conditions{IfUnmodifiedSince: past}, 412},
		{"if-unmodified-since future", Conditions{IfUnmodifiedSince: future}, 200},
		// If-None-Match takes precedence over If-Modified-Since, If-Match over
		// If-Unmodified-Since.
		{"inm miss beats ims", Conditions{IfNoneMatch: `"nope"`, IfModifiedSince: future}, 200},
		{"if-match beats ius", Conditions{IfMatch: tag, IfUnmodifiedSince: past}, 200},
		{"412 before 304", Conditions{IfMatch: `"nope"`, IfNoneMatch: tag}, 412},
	} {
		res, got := read(t, b, "a/b.txt", GetOptions{Conditions: c.c})
		if res.Status != c.status || (c.status == 200) != (got == body) {
			t.Errorf("%s: %d %q, want %d", c.name, res.Status, got, c.status)
		}
	}
	// If-Range: the range applies only to the representation named.
	if res, got := read(t, b, "a/b.txt", GetOptions{RangeHeader: "bytes=0-4", Conditions: Conditions{IfRange: tag}}); res.Status != 206 || got != "hello" {
		t.Errorf("if-range match: %d %q", res.Status, got)
	}
	if res, got := read(t, b, "a/b.txt", GetOptions{RangeHeader: "bytes=0-4", Conditions: Conditions{IfRange: `"old"`}}); res.Status != 200 || got != body {
		t.Errorf("if-range miss: %d %q", res.Status, got)
	}

	// Listing: order, prefixes, delimiters, cursors.
	keys := []string{"a/c", "a/d/e", "a/d/f", "b", "é", "z/" + strings.Repeat("k", 200), "z/" + strings.Repeat("k", 64), "z/" + strings.Repeat("k", 62), "../../etc/passwd"}
	for _, k := range keys {
		put(t, b, k, k)
	}
	all := append(slices.Clone(keys), "a/b.txt")
	slices.Sort(all)
	var listed []string
	cursor := ""
	for range 20 {
		r, err := List(ctx, b, ListOptions{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range r.Objects {
			listed = append(listed, o.Key)
		}
		if !r.Truncated {
			break
		}
		cursor = r.Cursor
	}
	if !slices.Equal(listed, all) {
		t.Fatalf("paged listing:\n got %q\nwant %q", listed, all)
	}
	r, err := List(ctx, b, ListOptions{Prefix: "a/", Delimiter: "/"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range r.Objects {
		names = append(names, o.Key)
	}
	if !slices.Equal(names, []string{"a/b.txt", "a/c"}) || !slices.Equal(r.Prefixes, []string{"a/d/"}) || r.Truncated {
		t.Fatalf("delimited listing: %q %q %v", names, r.Prefixes, r.Truncated)
	}
	// A prefix counts toward the limit, and the cursor skips everything under it.
	r, _ = List(ctx, b, ListOptions{Delimiter: "/", Limit: 2})
	if !slices.Equal(r.Prefixes, []string{"../", "a/"}) || len(r.Objects) != 0 || !r.Truncated {
		t.Fatalf("first delimited page: %+v", r)
	}
	r, _ = List(ctx, b, ListOptions{Delimiter: "/", Limit: 2, Cursor: r.Cursor})
	if len(r.Objects) != 1 || r.Objects[0].Key != "b" || !slices.Equal(r.Prefixes, []string{"z/"}) {
		t.Fatalf("second delimited page: %+v %q", r.Objects, r.Prefixes)
	}
	if _, err := List(ctx, b, ListOptions{Cursor: "!!"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}

	// Deletes.
	if err := b.Delete(ctx, []string{"a/c", "b", "never-there"}); err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Head(ctx, "b"); h != nil {
		t.Fatal("deleted object still there")
	}
	if _, got := read(t, b, "../../etc/passwd", GetOptions{}); got != "../../etc/passwd" {
		t.Fatalf("a key that looks like a path: %q", got)
	}

	// Invalid keys.
	for _, k := range []string{"", strings.Repeat("x", MaxKeyLen+1), "\xff\xfe"} {
		if _, err := b.Put(ctx, k, strings.NewReader("x"), PutOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("put %q: %v", k, err)
		}
	}
	long := strings.Repeat("é", MaxKeyLen/2)
	put(t, b, long, "longest key")
	if _, got := read(t, b, long, GetOptions{}); got != "longest key" {
		t.Fatalf("longest key: %q", got)
	}

	// Multipart.
	id, err := b.CreateUpload(ctx, "big", PutOptions{HTTP: HTTPMetadata{ContentType: "application/octet-stream"}})
	if err != nil {
		t.Fatal(err)
	}
	p1data := bytes.Repeat([]byte("1"), MinPartSize)
	p2data := []byte("tail")
	p2, err := b.UploadPart(ctx, "big", id, 2, bytes.NewReader(p2data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := b.UploadPart(ctx, "big", id, 1, bytes.NewReader(p1data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CompleteUpload(ctx, "big", id, []Part{p2, p1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("parts out of order: %v", err)
	}
	if _, err := b.CompleteUpload(ctx, "other", id, []Part{p1, p2}); !errors.Is(err, ErrNoUpload) {
		t.Fatalf("upload completed under another key: %v", err)
	}
	obj, err := b.CompleteUpload(ctx, "big", id, []Part{p1, {Number: 2, ETag: `"` + p2.ETag + `"`}})
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != int64(len(p1data)+len(p2data)) || !(strings.HasSuffix(obj.ETag, "-2") || s3ETags && obj.ETag != "") || obj.HTTP.ContentType != "application/octet-stream" {
		t.Fatalf("completed: %+v", obj)
	}
	if res, got := read(t, b, "big", GetOptions{Range: &Range{Suffix: 6}}); got != "11tail" || res.Status != 206 {
		t.Fatalf("assembled object's end: %d %q", res.Status, got)
	}
	if _, err := b.UploadPart(ctx, "big", id, 3, strings.NewReader("x"), PutOptions{}); !errors.Is(err, ErrNoUpload) {
		t.Fatalf("part of a completed upload: %v", err)
	}
	id2, _ := b.CreateUpload(ctx, "small", PutOptions{})
	sp1, _ := b.UploadPart(ctx, "small", id2, 1, strings.NewReader("short"), PutOptions{})
	sp2, _ := b.UploadPart(ctx, "small", id2, 2, strings.NewReader("x"), PutOptions{})
	if _, err := b.CompleteUpload(ctx, "small", id2, []Part{sp1, sp2}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a part below the minimum size: %v", err)
	}
	if err := b.AbortUpload(ctx, "small", id2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CompleteUpload(ctx, "small", id2, []Part{sp1}); !errors.Is(err, ErrNoUpload) {
		t.Fatalf("aborted upload completed: %v", err)
	}
	for _, bad := range []string{"../../x", "", strings.Repeat("0", 31) + "/"} {
		if _, err := b.UploadPart(ctx, "big", bad, 1, strings.NewReader("x"), PutOptions{}); !errors.Is(err, ErrNoUpload) {
			t.Errorf("upload id %q: %v", bad, err)
		}
	}
}

func TestLocalBucket(t *testing.T) {
	s, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Bucket(context.Background(), "files")
	if err != nil {
		t.Fatal(err)
	}
	testBucket(t, b, false)
	for _, n := range []string{"", "../x", "a/b", "a.b", strings.Repeat("x", 64)} {
		if _, err := s.Bucket(context.Background(), n); !errors.Is(err, ErrInvalid) {
			t.Errorf("bucket %q: %v", n, err)
		}
	}
}

// TestLocalKeysStayInBucket: whatever a key holds, its file is inside the bucket's objects
// directory, and a neighbouring bucket is never touched.
func TestLocalKeysStayInBucket(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenLocal(dir)
	a, _ := s.Bucket(context.Background(), "a")
	other, _ := s.Bucket(context.Background(), "other")
	put(t, other, "secret", "other tenant's")
	evil := []string{"../other/objects/secret", "..", ".", "/etc/passwd", "../../../../../../tmp/x", "a\x00b", `..\..\x`, "%2e%2e/x", strings.Repeat("../", 300)}
	for _, k := range evil {
		put(t, a, k, "mine")
		if _, got := read(t, a, k, GetOptions{}); got != "mine" {
			t.Fatalf("%q: %q", k, got)
		}
	}
	if _, got := read(t, other, "secret", GetOptions{}); got != "other tenant's" {
		t.Fatalf("the other bucket's object changed: %q", got)
	}
	root := filepath.Join(dir, "a", "objects")
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, objectSuffix) && !strings.HasPrefix(p, root) && !strings.HasPrefix(p, filepath.Join(dir, "other")) {
			t.Errorf("object file outside its bucket: %s", p)
		}
		return nil
	})
	if err := a.Delete(context.Background(), evil); err != nil {
		t.Fatal(err)
	}
	if _, got := read(t, other, "secret", GetOptions{}); got != "other tenant's" {
		t.Fatal("a delete reached the other bucket")
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-4", "bytes=-5", "bytes=3-", "bytes=1-0", "bytes=0-1,2-3", "bytes=--1", "bytes= 1-2"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, v string, size int64) {
		if size < 0 {
			return
		}
		off, n, ok := parseRange(v, size)
		if !ok || n < 0 {
			return
		}
		if off < 0 || n <= 0 || off+n > size {
			t.Fatalf("%q on %d: %d+%d", v, size, off, n)
		}
	})
}

func BenchmarkLocalPutGet(b *testing.B) {
	s, _ := OpenLocal(b.TempDir())
	bk, _ := s.Bucket(context.Background(), "bench")
	data := bytes.Repeat([]byte("x"), 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(data)))
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("k%d", i%16)
		if _, err := bk.Put(context.Background(), key, bytes.NewReader(data), PutOptions{}); err != nil {
			b.Fatal(err)
		}
		res, err := Get(context.Background(), bk, key, GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}
