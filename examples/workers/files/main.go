// Command files is an upload and download service on an object storage bucket, in the
// manner of Cloudflare R2:
//
//	PUT    /files/KEY        stores the request body (streamed, any size up to 5 GiB);
//	                         Content-Type is kept, X-Meta-* fields become custom metadata,
//	                         Content-MD5 (base64) and X-Checksum-SHA256 (hex) are verified
//	GET    /files/KEY        downloads, answering Range, If-Match, If-None-Match,
//	HEAD   /files/KEY        If-Modified-Since, If-Unmodified-Since and If-Range as RFC 9110
//	                         says (206, 304, 412, 416)
//	DELETE /files/KEY        deletes
//	GET    /list?prefix=P&delimiter=D&cursor=C&limit=N   lists, as JSON
//
//	POST   /uploads/KEY                       starts a multipart upload: {"uploadId": ...}
//	PUT    /uploads/KEY?uploadId=U&part=N     uploads part N (5 MiB at least but the last)
//	POST   /uploads/KEY?uploadId=U&complete   completes, the body listing the parts:
//	                                          [{"part": 1, "etag": "..."}, ...]
//	DELETE /uploads/KEY?uploadId=U            aborts
//
//	PUT    /gen/KEY?bytes=N   stores N bytes the worker generates (a body that is not the
//	                          request's, handed to the host piece by piece); with &fail=M
//	                          the generator fails after M bytes, and the put stores nothing
//	GET    /sha256/KEY        reads the object inside the worker and answers its SHA-256
//
// The body of a download is copied to the client by the host, and the body of an upload
// from the client into the bucket: neither passes through the worker's memory, which stays
// flat for objects of any size.
//
// It expects the binding FILES:
//
//	workers:
//	  - name: files
//	    package: ./examples/workers/files
//	    buckets: [{binding: FILES, bucket: files}]
//	    limits: {wall_time: 1h}
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"

	sdk "github.com/verge-edge/verge/sdk/go"
)

var files = sdk.Bucket("FILES")

func init() { sdk.Serve(serve) }

func main() {}

func serve(w sdk.ResponseWriter, r *sdk.Request) {
	path := r.Path()
	switch {
	case strings.HasPrefix(path, "/files/"):
		key, ok := keyOf(w, path, "/files/")
		if !ok {
			return
		}
		switch r.Method {
		case "PUT":
			put(w, r, key)
		case "DELETE":
			if err := files.Delete(key); err != nil {
				fail(w, err)
				return
			}
			w.WriteHeader(204)
		default:
			sdk.ServeObject(w, r, files, key)
		}
	case path == "/list":
		list(w, r)
	case strings.HasPrefix(path, "/uploads/"):
		key, ok := keyOf(w, path, "/uploads/")
		if ok {
			multipart(w, r, key)
		}
	case strings.HasPrefix(path, "/gen/") && r.Method == "PUT":
		key, ok := keyOf(w, path, "/gen/")
		if !ok {
			return
		}
		q := r.URL().Query()
		n, _ := strconv.ParseInt(q.Get("bytes"), 10, 64)
		failAt, _ := strconv.ParseInt(q.Get("fail"), 10, 64)
		obj, err := files.Put(key, &pattern{left: n, failAt: failAt}, nil)
		if err != nil {
			fail(w, err)
			return
		}
		sdk.WriteJSON(w, 201, describe(obj))
	case strings.HasPrefix(path, "/sha256/"):
		key, ok := keyOf(w, path, "/sha256/")
		if !ok {
			return
		}
		obj, err := files.Get(key, nil)
		if err != nil || obj == nil {
			notFound(w, err)
			return
		}
		h := sha256.New()
		_, err = io.Copy(h, obj.Body)
		obj.Body.Close()
		if err != nil {
			fail(w, err)
			return
		}
		w.Write([]byte(hex.EncodeToString(h.Sum(nil))))
	default:
		sdk.ErrorResponse(w, "not found", 404)
	}
}

// keyOf returns the object key of a path: the rest after prefix, unescaped.
func keyOf(w sdk.ResponseWriter, path, prefix string) (string, bool) {
	key, err := unescape(strings.TrimPrefix(path, prefix))
	if err != nil || key == "" {
		sdk.ErrorResponse(w, "bad key", 400)
		return "", false
	}
	return key, true
}

func put(w sdk.ResponseWriter, r *sdk.Request, key string) {
	o := &sdk.PutOptions{HTTPMetadata: sdk.HTTPMetadata{
		ContentType:        r.Header.Get("Content-Type"),
		ContentDisposition: r.Header.Get("Content-Disposition"),
		CacheControl:       r.Header.Get("Cache-Control"),
	}}
	for _, f := range r.Header.Fields() {
		if len(f.Name) > 7 && strings.EqualFold(f.Name[:7], "X-Meta-") {
			if o.CustomMetadata == nil {
				o.CustomMetadata = map[string]string{}
			}
			o.CustomMetadata[strings.ToLower(f.Name[7:])] = f.Value
		}
	}
	if v := r.Header.Get("Content-MD5"); v != "" {
		sum, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			sdk.ErrorResponse(w, "bad Content-MD5", 400)
			return
		}
		o.MD5 = sum
	}
	if v := r.Header.Get("X-Checksum-SHA256"); v != "" {
		sum, err := hex.DecodeString(v)
		if err != nil {
			sdk.ErrorResponse(w, "bad X-Checksum-SHA256", 400)
			return
		}
		o.SHA256 = sum
	}
	// r.Body is the request body: the host reads it into the bucket itself.
	obj, err := files.Put(key, r.Body, o)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("ETag", obj.HTTPETag)
	sdk.WriteJSON(w, 201, describe(obj))
}

type objectInfo struct {
	Key      string            `json:"key"`
	Size     int64             `json:"size"`
	ETag     string            `json:"etag"`
	Uploaded string            `json:"uploaded"`
	Type     string            `json:"contentType,omitempty"`
	Custom   map[string]string `json:"customMetadata,omitempty"`
}

func describe(o *sdk.Object) objectInfo {
	return objectInfo{Key: o.Key, Size: o.Size, ETag: o.ETag, Uploaded: o.Uploaded.Format("2006-01-02T15:04:05.000Z"),
		Type: o.HTTPMetadata.ContentType, Custom: o.CustomMetadata}
}

func list(w sdk.ResponseWriter, r *sdk.Request) {
	q := r.URL().Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	res, err := files.List(&sdk.ObjectListOptions{Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"), Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		fail(w, err)
		return
	}
	out := struct {
		Objects   []objectInfo `json:"objects"`
		Prefixes  []string     `json:"delimitedPrefixes"`
		Truncated bool         `json:"truncated"`
		Cursor    string       `json:"cursor,omitempty"`
	}{Objects: []objectInfo{}, Prefixes: res.DelimitedPrefixes, Truncated: res.Truncated, Cursor: res.Cursor}
	for _, o := range res.Objects {
		out.Objects = append(out.Objects, describe(o))
	}
	sdk.WriteJSON(w, 200, out)
}

func multipart(w sdk.ResponseWriter, r *sdk.Request, key string) {
	q := r.URL().Query()
	id := q.Get("uploadId")
	switch {
	case r.Method == "POST" && id == "":
		u, err := files.CreateMultipartUpload(key, &sdk.PutOptions{HTTPMetadata: sdk.HTTPMetadata{ContentType: r.Header.Get("Content-Type")}})
		if err != nil {
			fail(w, err)
			return
		}
		sdk.WriteJSON(w, 200, map[string]string{"key": key, "uploadId": u.UploadID})
	case r.Method == "PUT" && id != "":
		n, err := strconv.Atoi(q.Get("part"))
		if err != nil {
			sdk.ErrorResponse(w, "bad part number", 400)
			return
		}
		p, err := files.ResumeMultipartUpload(key, id).UploadPart(n, r.Body)
		if err != nil {
			fail(w, err)
			return
		}
		sdk.WriteJSON(w, 200, map[string]any{"part": p.PartNumber, "etag": p.ETag})
	case r.Method == "POST" && q.Has("complete"):
		var parts []struct {
			Part int    `json:"part"`
			ETag string `json:"etag"`
		}
		if err := sdk.ReadJSON(r, &parts); err != nil {
			sdk.ErrorResponse(w, "bad part list: "+err.Error(), 400)
			return
		}
		list := make([]sdk.UploadedPart, len(parts))
		for i, p := range parts {
			list[i] = sdk.UploadedPart{PartNumber: p.Part, ETag: p.ETag}
		}
		obj, err := files.ResumeMultipartUpload(key, id).Complete(list)
		if err != nil {
			fail(w, err)
			return
		}
		sdk.WriteJSON(w, 201, describe(obj))
	case r.Method == "DELETE" && id != "":
		if err := files.ResumeMultipartUpload(key, id).Abort(); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(204)
	default:
		sdk.ErrorResponse(w, "bad multipart request", 400)
	}
}

// fail answers a bucket error: 400 for what the request got wrong (a bad key, a checksum
// mismatch, an unknown upload), 413 for a body too large, 500 otherwise.
func fail(w sdk.ResponseWriter, err error) {
	var e *sdk.Error
	if errors.As(err, &e) {
		switch e.Code {
		case sdk.ErrInvalid:
			sdk.ErrorResponse(w, e.Message, 400)
			return
		case sdk.ErrLimit:
			sdk.ErrorResponse(w, e.Message, 413)
			return
		}
	}
	sdk.ErrorResponse(w, err.Error(), 500)
}

func notFound(w sdk.ResponseWriter, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	sdk.ErrorResponse(w, "not found", 404)
}

// pattern is a generated body of left bytes, failing after failAt bytes when failAt > 0.
type pattern struct{ left, off, failAt int64 }

var errGenerator = errors.New("the generator failed")

func (p *pattern) Read(b []byte) (int, error) {
	if p.failAt > 0 && p.off >= p.failAt {
		return 0, errGenerator
	}
	if p.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.left))
	for i := range n {
		b[i] = byte((p.off + int64(i)) * 7)
	}
	p.left -= int64(n)
	p.off += int64(n)
	return n, nil
}

// unescape decodes %XX escapes of a path.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("bad escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
